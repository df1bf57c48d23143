"""GitHub, a git source: deployments with their statuses, and closed pull requests, of the repos
named in the ownership file.

- ``client.py``: the REST and GraphQL client (ETags, rate limits, GitHub Enterprise);
- ``streams.py``: how each stream reads a night and a backfill repo;
- ``records.py``: the record rules;
- ``quality.py``: the Great Expectations rules of its staging tables (the second line);
- ``resource.py``: the settings and the Dagster resource ``github``.
"""

from pipelines.connectors.github import quality, resource, streams
from pipelines.ingest.contract import Connector, OwnershipNames

CONNECTOR = Connector(
    name=streams.SOURCE,
    label="GitHub",
    kind="git",
    streams=streams.STREAMS,
    resource=resource.from_env,
    settings=resource.SETTINGS,
    quality=quality.TABLES,
    ownership=OwnershipNames(backstage_annotation="github.com/project-slug", plain_repos=True),
)
