-- Argo CD action "retry" on a StrategyRollout: Start the rollout again from the first step after a rollback.
-- Writes the same manual request as `kubectl strategy` to status.request; Argo CD (>= 1.8) sends
-- status changes of an action through the status subresource, so the spec (and sync) is untouched.
local now = os.time()
if obj.status == nil then
  obj.status = {}
end
obj.status.request = {
  id = "argocd-retry-" .. tostring(now),
  action = "retry",
  by = "argocd",
  reason = "Argo CD resource action retry",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ", now),
}
return obj
