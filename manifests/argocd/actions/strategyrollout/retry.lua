-- Argo CD action "retry" on a StrategyRollout: Start the rollout again from the first step after a rollback.
-- Adds ONE request to status.requests, the protocol `kubectl strategy` uses; Argo CD sends an action's
-- status change to the status subresource as a merge patch, so the spec (and sync) is untouched and
-- no other pending request is replaced. The id is per object version: a double click is one request.
-- Argo CD runs actions without the standard libraries; its safe `os` (time, date) comes from require.
local os = require("os")
local by = "system:serviceaccount:argocd:argocd-server"
local id = "argocd-" .. tostring(obj.metadata.resourceVersion) .. "-retry"
if obj.status == nil then
  obj.status = {}
end
if obj.status.requests == nil then
  obj.status.requests = {}
end
obj.status.requests[id] = {
  action = "retry",
  by = by,
  reason = "Argo CD resource action retry",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ"),
}
return obj
