-- Teams from the ownership file: time zone, business hours and adoption date.
-- team_key: the team's key in the ownership file
-- team_name: display name
-- source_team_ids: the team's id in each paging source, from the ownership file (source_team_ids['<source>']); empty when none given
-- time_zone: IANA zone the business hours are in
-- business_hours_start: local start of business hours (HH:MM)
-- business_hours_end: local end of business hours (HH:MM, exclusive)
-- business_isodows: ISO weekdays that are business days (Monday = 1)
-- adopted_on: the date the team adopted service ownership; null when it has not
select
    team_key,
    team_name,
    cast(json(source_team_ids) as map(varchar, varchar)) as source_team_ids,
    time_zone,
    cast(business_hours_start as time) as business_hours_start,
    cast(business_hours_end as time) as business_hours_end,
    list_transform(string_split(business_isodows, ','), lambda d: cast(d as integer)) as business_isodows,
    adopted_on
from raw.ownership_teams
