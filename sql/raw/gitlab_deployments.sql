-- raw.gitlab_deployments: GitLab deployments exactly as the API sent them (JSON), one row per id.
-- Upserted by id; a row changes only when the API sends a different version of the record.
create table if not exists raw.gitlab_deployments (
    id varchar primary key,          -- GitLab's numeric id, as text
    repo varchar not null,           -- the project's path (group/sub/project) the record was read from
    payload json not null,           -- the record as sent
    fetched_at timestamptz not null, -- when this version was first fetched
    run_id varchar not null          -- the Dagster run that fetched this version
);
