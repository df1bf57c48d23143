"""GitLab's settings and Dagster resource (``GITLAB_API_URL``, ``GITLAB_TOKEN``)."""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg

from pipelines.config import setting
from pipelines.errors import UserFacingError

ENV_URL = "GITLAB_API_URL"
ENV_TOKEN = "GITLAB_TOKEN"
DEFAULT_API_URL = "https://gitlab.com/api/v4"
# A regular expression on environment names (searched anywhere: anchor it, ^(production|live)$) that
# decides which deployments are production, instead of the tier (GitLab guesses a tier from the
# name when CI does not set one, and guesses "nonprod" as production).
ENV_PRODUCTION_PATTERN = "INCIDENT_METRICS_GITLAB_PRODUCTION_PATTERN"
SETTINGS = (ENV_URL, ENV_TOKEN)


class GitLabResource(dg.ConfigurableResource):
    """The GitLab REST API v4 (``GITLAB_API_URL``: gitlab.com by default, self-managed
    ``https://HOST/api/v4``). The token (``GITLAB_TOKEN``: a read-only personal, group or project
    access token, sent as ``PRIVATE-TOKEN``) is needed only when the ownership file names GitLab
    repos: an organisation without them needs no GitLab setting at all."""

    api_url: str = DEFAULT_API_URL
    token: Optional[str] = None  # from_env: dg.EnvVar(GITLAB_TOKEN) when set (read at run time, never shown)
    ca_bundle: Optional[str] = None
    concurrency: int = 4  # requests in flight, and projects read at once
    timeout_seconds: float = 30.0

    def client(self):
        from pipelines.connectors.gitlab.client import GitLabClient

        token = (self.token or os.environ.get(ENV_TOKEN) or "").strip()
        if not token:
            raise UserFacingError(f"the ownership file names GitLab repos, but {ENV_TOKEN} is not set: set it to a "
                                  "read-only access token (read_api scope)")
        return GitLabClient(self.api_url.rstrip("/"), token, ca_bundle=self.ca_bundle or None,
                            concurrency=self.concurrency, timeout=self.timeout_seconds)


def from_env() -> GitLabResource:
    """The resource as the code location configures it; the token, when set, is read at run time (``EnvVar``)."""
    return GitLabResource(api_url=setting(ENV_URL, DEFAULT_API_URL),
                          token=dg.EnvVar(ENV_TOKEN) if os.environ.get(ENV_TOKEN, "").strip() else None,
                          ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or None)
