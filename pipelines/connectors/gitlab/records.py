"""GitLab's record rules: what a deployment, an environment and a merge request must hold to enter
``raw.gitlab_*`` (docs/data-quality.md). GitLab's ids are integers."""

from __future__ import annotations

from datetime import datetime

from pipelines.records import RecordRules, Rejection, check_times, is_int, parse_time, short

SOURCE = "gitlab"
# GitLab's documented deployment statuses.
DEPLOYMENT_STATUSES = frozenset({"created", "running", "success", "failed", "canceled", "blocked", "skipped"})
TIERS = frozenset({"production", "staging", "testing", "development", "other"})


def _check_deployment(r: dict, now: datetime) -> Rejection | None:
    problem = check_times(r, (("created_at", True), ("updated_at", True), ("finished_at", False)), now)
    if problem:
        return problem
    if r.get("status") not in DEPLOYMENT_STATUSES:
        return "unknown_value", f"status must be one of {sorted(DEPLOYMENT_STATUSES)}, got {short(r.get('status'))}"
    env = r.get("environment")
    if not isinstance(env, dict) or not isinstance(env.get("name"), str) or not env["name"]:
        return "missing_field", "environment.name is missing: production deployments cannot be told apart"
    if not is_int(env.get("id")):
        return "missing_field", "environment.id is missing: the environment's tier cannot be found"
    return None


def _check_environment(r: dict, now: datetime) -> Rejection | None:
    if not isinstance(r.get("name"), str) or not r["name"]:
        return "missing_field", "name is missing"
    tier = r.get("tier")
    if tier is not None and tier not in TIERS:
        return "unknown_value", f"tier must be one of {sorted(TIERS)} or absent, got {short(tier)}"
    return None


def _check_merge_request(r: dict, now: datetime) -> Rejection | None:
    problem = check_times(r, (("updated_at", True), ("created_at", True), ("merged_at", False)), now)
    if problem:
        return problem
    if not is_int(r.get("iid")):
        return "wrong_type", f"iid must be an integer, got {short(r.get('iid'))}"
    created, merged = parse_time(r.get("created_at")), parse_time(r.get("merged_at"))
    if created is not None and merged is not None and merged < created:
        return "merged_before_created", f"merged_at {r['merged_at']} is before created_at {r['created_at']}"
    return None


DEPLOYMENT = RecordRules("gitlab_deployment", _check_deployment, integer_id=True)
ENVIRONMENT = RecordRules("gitlab_environment", _check_environment, integer_id=True)
MERGE_REQUEST = RecordRules("gitlab_merge_request", _check_merge_request, integer_id=True)
