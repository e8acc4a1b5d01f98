-- Argo CD action "promote" on a StrategyRollout: Move to the next step (or the next stage at a manual promotion).
-- Writes the same manual request as `kubectl strategy` to status.request; Argo CD (>= 1.8) sends
-- status changes of an action through the status subresource, so the spec (and sync) is untouched.
local now = os.time()
if obj.status == nil then
  obj.status = {}
end
obj.status.request = {
  id = "argocd-promote-" .. tostring(now),
  action = "promote",
  by = "argocd",
  reason = "Argo CD resource action promote",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ", now),
}
return obj
