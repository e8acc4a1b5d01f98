-- Argo CD action "run" on a ParityCheck: run the check now, outside its schedule.
-- Writes the same request as `kubectl strategy parity run` to status.runRequest (status subresource).
local now = os.time()
if obj.status == nil then
  obj.status = {}
end
obj.status.runRequest = {
  id = "argocd-run-" .. tostring(now),
  by = "argocd",
  at = os.date("!%Y-%m-%dT%H:%M:%SZ", now),
}
return obj
