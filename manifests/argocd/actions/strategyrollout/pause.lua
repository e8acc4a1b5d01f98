-- Argo CD action "pause" on a StrategyRollout: Freeze the rollout where it is.
-- Writes the same manual request as `kubectl strategy` to status.request; Argo CD (>= 1.8) sends
-- status changes of an action through the status subresource, so the spec (and sync) is untouched.
local now = os.time()
if obj.status == nil then
  obj.status = {}
end
obj.status.request = {
  id = "argocd-pause-" .. tostring(now),
  action = "pause",
  by = "argocd",
  reason = "Argo CD resource action pause",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ", now),
}
return obj
