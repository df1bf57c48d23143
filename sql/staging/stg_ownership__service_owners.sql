-- Dated service ownership from the ownership file: one row per service id and owning period.
-- A service is named by (source, service_id); one paged from two sources has rows for both ids.
-- A service listed with 'unowned: true' has one row with a null team: known, owned by nobody.
-- service_key: the service in the ownership file, whichever of its ids: <source>:<id> of its first id
-- source: the paging source of service_id
-- service_id: the service's id in that source
-- service_name: name of the service in the ownership file
-- team_key: the owning team in that period; null for a service listed as unowned
-- valid_from: first day of the period (UTC date); '1970-01-01' when open-ended
-- valid_to: day after the period (exclusive); '9999-12-31' while current
select
    service_key,
    source,
    service_id,
    service_name,
    team_key,
    coalesce(valid_from, date '1970-01-01') as valid_from,
    coalesce(valid_to, date '9999-12-31') as valid_to
from raw.ownership_service_owners
