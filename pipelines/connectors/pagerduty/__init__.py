"""PagerDuty, a paging source: teams, services, incidents, log entries and (optionally) Analytics.

- ``client.py``: the REST API v2 client (pagination, the 10,000-record window split, rate limits);
- ``streams.py``: how each stream reads a night and a backfill window;
- ``records.py``: the record rules, and the acknowledgement rule that needs two records;
- ``quality.py``: the Great Expectations rules of its staging tables (the second line);
- ``resource.py``: the settings and the Dagster resource ``pagerduty``.
"""

from pipelines.connectors.pagerduty import quality, resource, streams
from pipelines.ingest.contract import Connector, OwnershipNames

CONNECTOR = Connector(
    name=streams.SOURCE,
    label="PagerDuty",
    kind="paging",
    streams=streams.STREAMS,
    resource=resource.from_env,
    settings=resource.SETTINGS,
    quality=quality.TABLES,
    ownership=OwnershipNames(service_alias="pagerduty_service_id", team_alias="pagerduty_team_id",
                             backstage_annotation="pagerduty.com/service-id"),
)
