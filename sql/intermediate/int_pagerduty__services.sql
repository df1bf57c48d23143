-- PagerDuty services in the neutral columns of every paging source: one row per service.
-- source: the paging source, 'pagerduty'
-- service_id: the source's service id
-- service_name: the name the source shows
select
    'pagerduty' as source,
    service_id,
    service_name
from staging.stg_pagerduty__services
