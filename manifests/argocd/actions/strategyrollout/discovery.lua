-- Which StrategyRollout actions Argo CD offers, by phase (runs without the standard libraries).
local actions = {}
local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
local moving = phase == "Progressing" or phase == "Paused"
local active = moving or phase == "Pending"
actions["promote"] = { ["disabled"] = not moving, ["iconClass"] = "fa fa-fw fa-forward" }
actions["promote-full"] = { ["disabled"] = not moving, ["iconClass"] = "fa fa-fw fa-fast-forward" }
actions["abort"] = { ["disabled"] = not active, ["iconClass"] = "fa fa-fw fa-undo" }
actions["retry"] = { ["disabled"] = phase ~= "RolledBack", ["iconClass"] = "fa fa-fw fa-redo" }
actions["pause"] = { ["disabled"] = not (phase == "Progressing" or phase == "Pending"), ["iconClass"] = "fa fa-fw fa-pause" }
actions["resume"] = { ["disabled"] = phase ~= "Paused", ["iconClass"] = "fa fa-fw fa-play" }
actions["approve"] = { ["disabled"] = not moving, ["iconClass"] = "fa fa-fw fa-check" }
return actions
