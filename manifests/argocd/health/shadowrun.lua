-- Argo CD health of a ShadowRun (strategyrollouts.io/v1alpha1).
-- Pending/Running -> Progressing; Completed: verdict Pass -> Healthy, Hold -> Suspended (a rollout
-- waiting on it does not start; re-run with more data), Fail -> Degraded; Invalid -> Degraded.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function reasons(status)
  if status.reasons ~= nil and #status.reasons > 0 then
    return table.concat(status.reasons, "; ")
  end
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return ""
end

local function progress(status)
  local d = status.decisions
  if d == nil or d.compared == nil then
    return ""
  end
  local text = tostring(d.compared) .. " decisions compared"
  if d.matchRate ~= nil then
    text = text .. ", match rate " .. string.format("%.3f", d.matchRate)
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local invalid = condition(status, "InvalidSpec")
if status.phase == "Invalid" or (invalid ~= nil and invalid.status == "True") then
  hs.status = "Degraded"
  local why = reasons(status)
  if invalid ~= nil and invalid.message ~= nil and invalid.message ~= "" then
    why = invalid.message
  end
  hs.message = "Invalid spec: " .. why
  return hs
end

if status.phase == "Completed" then
  local why = reasons(status)
  if status.verdict == "Pass" then
    hs.status = "Healthy"
    hs.message = "Verdict Pass"
  elseif status.verdict == "Hold" then
    hs.status = "Suspended"
    hs.message = "Verdict Hold"
  else
    hs.status = "Degraded"
    hs.message = "Verdict " .. tostring(status.verdict or "missing")
  end
  if why ~= "" then
    hs.message = hs.message .. ": " .. why
  end
  local p = progress(status)
  if p ~= "" then
    hs.message = hs.message .. " (" .. p .. ")"
  end
  return hs
end

hs.status = "Progressing"
local p = progress(status)
if p ~= "" then
  hs.message = status.phase .. ": " .. p
else
  hs.message = status.phase
end
return hs
