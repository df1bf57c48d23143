"""PagerDuty's settings and Dagster resource (``PAGERDUTY_API_URL``, ``PAGERDUTY_API_TOKEN``)."""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg

from pipelines.config import env, setting

ENV_URL = "PAGERDUTY_API_URL"
ENV_TOKEN = "PAGERDUTY_API_TOKEN"
ENV_ANALYTICS = "INCIDENT_METRICS_PAGERDUTY_ANALYTICS"
DEFAULT_API_URL = "https://api.pagerduty.com"
SETTINGS = (ENV_URL, ENV_TOKEN, ENV_ANALYTICS)


class PagerDutyResource(dg.ConfigurableResource):
    """PagerDuty REST API v2 (``PAGERDUTY_API_URL``, ``PAGERDUTY_API_TOKEN``)."""

    api_url: str = DEFAULT_API_URL
    api_token: str
    ca_bundle: Optional[str] = None
    rate_per_minute: int = 900  # below PagerDuty's 960 a minute per token
    # Requests in flight at most; None = enough for rate_per_minute (4 at 900 a minute, more for a raised limit).
    concurrency: Optional[int] = None
    timeout_seconds: float = 30.0
    # Also read POST /analytics/raw/incidents into raw.pagerduty_analytics_incidents (streams.py);
    # on 402/403/404 it falls back to incidents plus log entries (which always run).
    use_analytics: bool = False

    def client(self):
        from pipelines.connectors.pagerduty.client import PagerDutyClient

        return PagerDutyClient(
            self.api_url.rstrip("/"),
            self.api_token,
            ca_bundle=self.ca_bundle or None,
            rate_per_minute=self.rate_per_minute,
            concurrency=self.concurrency,
            timeout=self.timeout_seconds,
        )


def from_env() -> PagerDutyResource:
    """The resource as the code location configures it; the token is read at run time (``EnvVar``)."""
    return PagerDutyResource(
        api_url=setting(ENV_URL, DEFAULT_API_URL),
        api_token=dg.EnvVar(ENV_TOKEN),
        use_analytics=env(ENV_ANALYTICS, "false").lower() in ("1", "true", "yes"),
        ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or None,
    )
