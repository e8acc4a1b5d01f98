-- Argo CD action "promote-full" on a StrategyRollout: Skip every remaining step and stage: the canary takes all keys now.
-- Writes the same manual request as `kubectl strategy` to status.request; Argo CD (>= 1.8) sends
-- status changes of an action through the status subresource, so the spec (and sync) is untouched.
local now = os.time()
if obj.status == nil then
  obj.status = {}
end
obj.status.request = {
  id = "argocd-promote-full-" .. tostring(now),
  action = "promoteFull",
  by = "argocd",
  reason = "Argo CD resource action promote-full",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ", now),
}
return obj
