-- Which ParityCheck actions Argo CD offers: "run" unless the spec is invalid (no standard libraries).
local actions = {}
local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
actions["run"] = { ["disabled"] = phase == "Invalid", ["iconClass"] = "fa fa-fw fa-play" }
return actions
