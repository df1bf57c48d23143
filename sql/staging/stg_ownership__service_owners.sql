-- Dated service ownership from the ownership file: one row per service and owning period.
-- service_id: PagerDuty service id
-- team_key: the owning team in that period
-- valid_from: first day of the period (UTC date); '1970-01-01' when open-ended
-- valid_to: day after the period (exclusive); '9999-12-31' while current
select
    service_id,
    service_name,
    team_key,
    coalesce(valid_from, date '1970-01-01') as valid_from,
    coalesce(valid_to, date '9999-12-31') as valid_to
from raw.ownership_service_owners
