-- Argo CD health of a ParityCheck (strategyrollouts.io/v1alpha1), from status.phase and lastRun.level.
-- Invalid -> Degraded; Suspended -> Suspended; last level Critical/Emergency -> Degraded;
-- Excellent/Good/Warning -> Healthy (Warning named in the message); no run yet, or a run without
-- enough data (level Unknown) -> Healthy with a message: the check itself is working as scheduled.
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

local function te(run)
  if run.trackingErrorBps == nil then
    return "tracking error n/a"
  end
  return "tracking error " .. string.format("%.1f", run.trackingErrorBps) .. " bps"
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
  if invalid ~= nil and invalid.message ~= nil and invalid.message ~= "" then
    hs.message = "Invalid spec: " .. invalid.message
  else
    hs.message = "Invalid spec: " .. tostring(status.message or "")
  end
  return hs
end

local run = status.lastRun
local level = nil
if run ~= nil then
  level = run.level
end

if level == "Critical" or level == "Emergency" then
  hs.status = "Degraded"
  hs.message = level .. ": " .. te(run)
  if status.consecutiveBreaches ~= nil then
    hs.message = hs.message .. ", " .. tostring(status.consecutiveBreaches) .. " consecutive breach(es)"
  end
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended (spec.suspend)"
  return hs
end

hs.status = "Healthy"
if run == nil then
  hs.message = "No run yet"
  if status.nextRunAt ~= nil then
    hs.message = hs.message .. "; next run at " .. status.nextRunAt
  end
elseif level == "Unknown" then
  hs.message = "Last run inconclusive (" .. tostring(run.samples or 0) .. " samples)"
  if run.message ~= nil then
    hs.message = hs.message .. ": " .. run.message
  end
else
  hs.message = tostring(level) .. ": " .. te(run)
end
if status.phase == "Running" then
  hs.message = "Running; last: " .. hs.message
end
return hs
