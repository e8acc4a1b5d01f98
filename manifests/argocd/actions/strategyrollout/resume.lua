-- Argo CD action "resume" on a StrategyRollout: Lift a manual pause.
-- Writes the same manual request as `kubectl strategy` to status.request; Argo CD (>= 1.8) sends
-- status changes of an action through the status subresource, so the spec (and sync) is untouched.
local now = os.time()
if obj.status == nil then
  obj.status = {}
end
obj.status.request = {
  id = "argocd-resume-" .. tostring(now),
  action = "resume",
  by = "argocd",
  reason = "Argo CD resource action resume",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ", now),
}
return obj
