-- PagerDuty services, typed: one row per service.
-- service_id: PagerDuty service id
-- service_name: name as shown in PagerDuty
-- service_status: active, warning, critical, maintenance or disabled
-- pagerduty_team_ids: the PagerDuty teams the service is tagged with (ownership comes from the ownership file, not from these)
select
    id as service_id,
    payload ->> 'name' as service_name,
    payload ->> 'status' as service_status,
    list_transform(coalesce(try_cast(payload -> 'teams' as json[]), []), lambda t: t ->> 'id') as pagerduty_team_ids
from raw.pagerduty_services
