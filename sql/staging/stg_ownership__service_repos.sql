-- Which GitHub repos deploy which PagerDuty service, from the ownership file.
-- service_id: PagerDuty service id
-- repo: owner/name
select distinct
    service_id,
    repo
from raw.ownership_service_repos
