"""API clients for the pipeline's sources (plain Python, no Dagster).

- :mod:`.http`: the shared HTTP layer (pooled session, retries, rate limiting, error messages);
- :mod:`.pagerduty`: PagerDuty incidents, log entries, directory lists and raw analytics;
- :mod:`.github`: GitHub repositories, deployments, deployment statuses and pull requests.
"""

from .github import DEFAULT_GITHUB_API_URL, GitHubClient
from .http import ApiError, AuthError, HttpClient, RetryBudgetExceeded, StreamStats
from .pagerduty import DEFAULT_PAGERDUTY_API_URL, PagerDutyClient

__all__ = [
    "ApiError",
    "AuthError",
    "DEFAULT_GITHUB_API_URL",
    "DEFAULT_PAGERDUTY_API_URL",
    "GitHubClient",
    "HttpClient",
    "PagerDutyClient",
    "RetryBudgetExceeded",
    "StreamStats",
]
