"""GitLab (gitlab.com or self-managed), a git source: deployments with their environments' tiers,
and merged merge requests, of the projects the ownership file names (``{gitlab: group/project}``).

- ``client.py``: the REST v4 client (what changed since the bookmark, never deep offsets, RateLimit headers);
- ``streams.py``: how each stream reads a night and a backfill project;
- ``records.py``: the record rules;
- ``quality.py``: the Great Expectations rules of its staging tables (the second line);
- ``resource.py``: the settings and the Dagster resource ``gitlab``.
"""

from pipelines.connectors.gitlab import quality, resource, streams
from pipelines.ingest.contract import Connector, OwnershipNames

CONNECTOR = Connector(
    name=streams.SOURCE,
    label="GitLab",
    kind="git",
    streams=streams.STREAMS,
    resource=resource.from_env,
    settings=resource.SETTINGS + (resource.ENV_PRODUCTION_PATTERN,),
    quality=quality.TABLES,
    # a project by its path (group/sub/project) or its numeric id
    ownership=OwnershipNames(backstage_annotation="gitlab.com/project-slug",
                             repo_pattern=r"^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+|[0-9]+)$",
                             repo_example="group/sub/project (or the project's numeric id)"),
    sql_variables=(("gitlab_production_pattern", resource.ENV_PRODUCTION_PATTERN),),
)
