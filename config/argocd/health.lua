-- Argo CD health check for velvetrope.io/Invitation.
-- Progressing while the operator has not judged the latest spec, Degraded
-- on a failure it reports, Suspended when paused (and the pause is applied),
-- Healthy when Ready (an exhausted or expired invitation has done its job).
local hs = {}
local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
-- The Ready condition says which generation it judged; the operator sets it
-- on every pass, also when the pass failed, so a failure on the latest spec
-- reads Degraded (status.observedGeneration only moves on after a pass
-- without errors).
local judged = ready.observedGeneration or obj.status.observedGeneration
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
   (judged == nil or judged < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to apply the latest spec"
  return hs
end
if ready.status ~= "True" then
  -- FleetProgressing (pods starting) stays Progressing; a fleet that
  -- will not start by itself (FleetUnavailable) is Degraded.
  if ready.reason == "MongoDBUnavailable" or ready.reason == "CodeConflict" or
     ready.reason == "TemplateInvalid" or ready.reason == "FleetFailed" or
     ready.reason == "FleetUnavailable" or ready.reason == "RevokePending" then
    hs.status = "Degraded"
    hs.message = ready.reason .. ": " .. (ready.message or "")
  else
    hs.status = "Progressing"
    hs.message = ready.message
  end
  return hs
end
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused: players cannot redeem this code until spec.paused is false"
  return hs
end
hs.status = "Healthy"
hs.message = ready.message
return hs
