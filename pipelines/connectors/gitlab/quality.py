"""The second line of data quality for GitLab's staging tables: their Great Expectations rules
(pipelines/quality.py runs them as asset checks; docs/data-quality.md)."""

from __future__ import annotations

from pipelines.connectors.gitlab.records import DEPLOYMENT_STATUSES, TIERS
from pipelines.quality import (
    BLOCKING,
    WARNING,
    TableQuality,
    at_or_after,
    in_set,
    not_null,
    parsed,
    plausible,
    unique,
)

TABLES: tuple[TableQuality, ...] = (
    TableQuality(
        "stg_gitlab__deployments", "deployment_id",
        """
        select deployment_id, repo, environment, status, created_at, finished_at, invalid_fields
        from staging.stg_gitlab__deployments order by deployment_id
        """,
        (
            not_null("deployment_id"), unique("deployment_id"), parsed(), not_null("repo"),
            not_null("created_at"), plausible("created_at"), not_null("environment"),
            in_set("status", sorted(DEPLOYMENT_STATUSES), BLOCKING),
            at_or_after("finished_at", "created_at"),
        ),
    ),
    TableQuality(
        "stg_gitlab__environments", "environment_id",
        "select environment_id, environment, tier from staging.stg_gitlab__environments order by environment_id",
        (
            not_null("environment_id"), unique("environment_id"), not_null("environment"),
            in_set("tier", sorted(TIERS), WARNING, "tier is one of GitLab's (null on a GitLab without tiers)"),
        ),
    ),
    TableQuality(
        "stg_gitlab__merge_requests", "merge_request_id",
        """
        select merge_request_id, repo, iid, created_at, merged_at, invalid_fields
        from staging.stg_gitlab__merge_requests order by merge_request_id
        """,
        (
            not_null("merge_request_id"), unique("merge_request_id"), parsed(),
            not_null("created_at"), plausible("created_at"), plausible("merged_at"),
            at_or_after("merged_at", "created_at"),
        ),
    ),
)
