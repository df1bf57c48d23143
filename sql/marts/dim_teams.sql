-- One row per team in the ownership file: time zone, business hours, adoption date, services owned today.
-- team_key: the team's key in the ownership file
-- team_name: display name
-- source_team_ids: the team's id in each paging source, from the ownership file (source_team_ids['<source>']); empty when none given
-- time_zone: IANA zone of the team's business hours
-- business_hours_start: local start of business hours (time of day, in time_zone)
-- business_hours_end: local end of business hours (exclusive, in time_zone)
-- business_isodows: ISO weekdays that are business days (Monday = 1)
-- adopted_on: service-ownership adoption date; null when not adopted
-- n_services_now: services the team owns today (a service paged from two sources counts once)
with current_owners as (
    select team_key, count(distinct service_key) as n_services_now
    from staging.stg_ownership__service_owners
    where valid_to = date '9999-12-31'
    group by team_key
)

select
    t.team_key,
    t.team_name,
    t.source_team_ids,
    t.time_zone,
    t.business_hours_start,
    t.business_hours_end,
    t.business_isodows,
    t.adopted_on,
    coalesce(c.n_services_now, 0) as n_services_now
from staging.stg_ownership__teams as t
left join current_owners as c on c.team_key = t.team_key
order by t.team_key
