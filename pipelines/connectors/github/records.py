"""GitHub's record rules: what a deployment, a deployment status and a pull request must hold to
enter ``raw.github_*`` (docs/data-quality.md). GitHub's ids are integers."""

from __future__ import annotations

from datetime import datetime

from pipelines.records import RecordRules, Rejection, check_time, check_times, is_int, parse_time, short

# GitHub's documented deployment status states.
DEPLOYMENT_STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})


def _check_deployment(r: dict, now: datetime) -> Rejection | None:
    problem = check_time(r, "created_at", required=True, now=now)
    if problem:
        return problem
    env = r.get("environment")
    if not isinstance(env, str) or not env:
        return "missing_field", "environment is missing: production deployments cannot be told apart"
    return None


def _check_deployment_status(r: dict, now: datetime) -> Rejection | None:
    problem = check_time(r, "created_at", required=True, now=now)
    if problem:
        return problem
    state = r.get("state")
    if state not in DEPLOYMENT_STATES:
        return "unknown_value", f"state must be one of {sorted(DEPLOYMENT_STATES)}, got {short(state)}"
    url = r.get("deployment_url")
    if not isinstance(url, str) or "/deployments/" not in url:
        return "missing_field", "deployment_url is missing: the status cannot be attached to its deployment"
    return None


def _check_pull_request(r: dict, now: datetime) -> Rejection | None:
    problem = check_times(r, (("updated_at", True), ("created_at", True), ("merged_at", False)), now)
    if problem:
        return problem
    number = r.get("number")
    if number is not None and not is_int(number):
        return "wrong_type", f"number must be an integer, got {type(number).__name__} {short(number)}"
    created, merged = parse_time(r.get("created_at")), parse_time(r.get("merged_at"))
    if created is not None and merged is not None and merged < created:
        return "merged_before_created", f"merged_at {r['merged_at']} is before created_at {r['created_at']}"
    return None


DEPLOYMENT = RecordRules("github_deployment", _check_deployment, integer_id=True)
DEPLOYMENT_STATUS = RecordRules("github_deployment_status", _check_deployment_status, integer_id=True)
PULL_REQUEST = RecordRules("github_pull_request", _check_pull_request, integer_id=True)
