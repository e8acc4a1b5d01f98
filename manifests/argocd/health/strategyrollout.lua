-- Argo CD health of a StrategyRollout (strategyrollouts.io/v1alpha1), from status.phase and conditions.
-- Pending/Progressing -> Progressing, Paused -> Suspended, Succeeded -> Healthy,
-- RolledBack/Invalid or InvalidSpec=True -> Degraded. A status older than the spec -> Progressing.
-- Pending requests are named in the message.
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

local function describe(status, fallback)
  local text = ""
  if status.reason ~= nil and status.reason ~= "" then
    text = status.reason
  end
  if status.message ~= nil and status.message ~= "" then
    if text ~= "" then
      text = text .. ": " .. status.message
    else
      text = status.message
    end
  end
  if text == "" then
    return fallback
  end
  return text
end

local function where(status)
  local parts = {}
  if status.stage ~= nil then
    table.insert(parts, "stage " .. status.stage)
  end
  if status.stepIndex ~= nil then
    table.insert(parts, "step " .. tostring(status.stepIndex))
  end
  if status.canaryWeight ~= nil then
    table.insert(parts, "weight " .. tostring(status.canaryWeight) .. "%")
  end
  return table.concat(parts, ", ")
end

-- Requests not handled yet (status.requests), so Argo CD shows that an action is waiting.
local function pending(status)
  if status.requests == nil then
    return ""
  end
  local parts = {}
  for _, r in pairs(status.requests) do
    table.insert(parts, tostring(r.action) .. " by " .. tostring(r.by))
  end
  if #parts == 0 then
    return ""
  end
  table.sort(parts)
  return "; pending request(s): " .. table.concat(parts, ", ")
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
    hs.message = describe(status, "Invalid spec")
  end
  hs.message = hs.message .. pending(status)
  return hs
end

if status.phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = "Rolled back: " .. describe(status, "no reason recorded")
  hs.message = hs.message .. pending(status)
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(status, degraded.message or "Degraded")
  hs.message = hs.message .. pending(status)
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(status, "Rollout complete")
  hs.message = hs.message .. pending(status)
  return hs
end

if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = describe(status, "Paused")
  hs.message = hs.message .. pending(status)
  return hs
end

-- Pending, Progressing, or a phase this script does not know yet.
hs.status = "Progressing"
local at = where(status)
local text = describe(status, status.phase)
if at ~= "" then
  text = text .. " (" .. at .. ")"
end
hs.message = text .. pending(status)
return hs
