-- Argo CD health check for velvetrope.io/Invitation.
-- Healthy when Ready (an exhausted or expired invitation has done its job),
-- Suspended when paused, Degraded on a failure the operator reports,
-- Progressing while the operator has not caught up with the spec.
local hs = {}
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused: players cannot redeem this code until spec.paused is false"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
   (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to apply the latest spec"
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    if c.status == "True" then
      hs.status = "Healthy"
      hs.message = c.message
    elseif c.reason == "MongoDBUnavailable" or c.reason == "CodeConflict" or
           c.reason == "TemplateInvalid" or c.reason == "FleetFailed" then
      hs.status = "Degraded"
      hs.message = c.reason .. ": " .. (c.message or "")
    else
      hs.status = "Progressing"
      hs.message = c.message
    end
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
