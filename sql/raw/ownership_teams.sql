-- raw.ownership_teams: teams as the ownership file describes them.
-- Rewritten from the ownership file every run (dropped and re-created from this file first).
create table if not exists raw.ownership_teams (
    team_key varchar primary key,
    team_name varchar not null,
    source_team_ids varchar not null,      -- JSON object: the team's id in each paging source, {} when none
    time_zone varchar not null,           -- IANA zone for business hours
    business_hours_start varchar not null, -- HH:MM local time
    business_hours_end varchar not null,   -- HH:MM local time, exclusive
    business_isodows varchar not null,     -- ISO weekdays (Monday = 1), comma separated
    adopted_on date                        -- service-ownership adoption; null = not adopted
);
