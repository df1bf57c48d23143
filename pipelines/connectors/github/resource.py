"""GitHub's settings and Dagster resource (``GITHUB_API_URL``, ``GITHUB_TOKEN``)."""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg

from pipelines.config import env, setting

ENV_URL = "GITHUB_API_URL"
ENV_TOKEN = "GITHUB_TOKEN"
ENV_DEPLOYMENTS_API = "INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_DEPLOYMENTS_API = "graphql"  # or "rest" (GitHub Enterprise Server without GraphQL)
SETTINGS = (ENV_URL, ENV_TOKEN, ENV_DEPLOYMENTS_API)


class GitHubResource(dg.ConfigurableResource):
    """GitHub REST and GraphQL APIs (``GITHUB_API_URL``, ``GITHUB_TOKEN``); GitHub Enterprise:
    https://HOST/api/v3 (GraphQL then at https://HOST/api/graphql)."""

    api_url: str = DEFAULT_API_URL
    token: str
    ca_bundle: Optional[str] = None
    concurrency: int = 4  # requests in flight, and repos read at once
    timeout_seconds: float = 30.0
    # How deployments and their statuses are read: "graphql" (100 deployments with their statuses a
    # request) or "rest" (plus one request per deployment; for a GitHub Enterprise Server without
    # GraphQL, or a token refused there). None: INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API, else graphql.
    deployments_api: Optional[str] = None

    def resolved_deployments_api(self) -> str:
        return (self.deployments_api or env(ENV_DEPLOYMENTS_API, DEFAULT_DEPLOYMENTS_API)).strip().lower()

    def client(self):
        from pipelines.connectors.github.client import GitHubClient

        return GitHubClient(
            self.api_url.rstrip("/"),
            self.token,
            ca_bundle=self.ca_bundle or None,
            concurrency=self.concurrency,
            timeout=self.timeout_seconds,
            deployments_api=self.resolved_deployments_api(),
        )


def from_env() -> GitHubResource:
    """The resource as the code location configures it; the token is read at run time (``EnvVar``)."""
    return GitHubResource(
        api_url=setting(ENV_URL, DEFAULT_API_URL),
        token=dg.EnvVar(ENV_TOKEN),
        ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or None,
    )
