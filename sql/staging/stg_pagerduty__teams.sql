-- PagerDuty teams, typed: one row per team.
-- team_id: PagerDuty team id
-- team_name: name as shown in PagerDuty
select
    id as team_id,
    payload ->> 'name' as team_name
from raw.pagerduty_teams
