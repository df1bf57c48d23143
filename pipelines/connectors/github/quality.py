"""The second line of data quality for GitHub's staging tables: their Great Expectations rules
(pipelines/quality.py runs them as asset checks; docs/data-quality.md)."""

from __future__ import annotations

from pipelines.connectors.github.records import DEPLOYMENT_STATES
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
        "stg_github__deployments", "deployment_id",
        """
        select deployment_id, repo, environment, created_at, invalid_fields
        from staging.stg_github__deployments order by deployment_id
        """,
        (
            not_null("deployment_id"), unique("deployment_id"), parsed(), not_null("repo"),
            not_null("created_at"), plausible("created_at"), not_null("environment"),
            in_set("environment", lambda s: s.allowed_environments, WARNING,
                    "environment is the production one or a known non-production name"),
        ),
    ),
    TableQuality(
        "stg_github__deployment_statuses", "status_id",
        """
        select status_id, deployment_id, state, created_at, invalid_fields
        from staging.stg_github__deployment_statuses order by status_id
        """,
        (
            not_null("status_id"), unique("status_id"), parsed(), not_null("deployment_id"),
            not_null("created_at"), plausible("created_at"),
            in_set("state", sorted(DEPLOYMENT_STATES), BLOCKING),
        ),
    ),
    TableQuality(
        "stg_github__pull_requests", "pull_request_id",
        """
        select pull_request_id, repo, number, created_at, merged_at, invalid_fields
        from staging.stg_github__pull_requests order by pull_request_id
        """,
        (
            not_null("pull_request_id"), unique("pull_request_id"), parsed(),
            not_null("created_at"), plausible("created_at"), plausible("merged_at"),
            at_or_after("merged_at", "created_at"),
        ),
    ),
)
