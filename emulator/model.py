"""The synthetic organisation: the one data model behind the emulator.

The generator (``generator.py``) builds an :class:`Organisation`; tests may build a tiny one by
hand. The HTTP server (``server.py``) renders it as PagerDuty and GitHub API responses. All
timestamps are timezone-aware UTC datetimes.

The emulator has a clock (``Organisation.now``): records created after it are invisible, and an
incident's status (triggered / acknowledged / resolved) is derived from its timestamps relative to
the clock. Advancing the clock therefore plays a "night" of new incidents, late acknowledgements
and resolutions without mutating any record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import yaml

# PagerDuty log-entry types this emulator emits (all documented in the OpenAPI LogEntry enum).
LOG_ENTRY_TYPES = (
    "trigger_log_entry",
    "acknowledge_log_entry",
    "unacknowledge_log_entry",
    "assign_log_entry",
    "delegate_log_entry",
    "escalate_log_entry",
    "notify_log_entry",
    "annotate_log_entry",
    "resolve_log_entry",
)


@dataclass
class Team:
    id: str  # PagerDuty team id, e.g. "PTEAM01"
    key: str  # slug used in ownership.yaml, e.g. "payments"
    name: str
    time_zone: str = "UTC"  # IANA zone
    business_hours_start: str = "09:00"
    business_hours_end: str = "17:00"
    business_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    adopted_on: date | None = None  # service-ownership adoption date; None = never adopted
    escalation_policy_id: str | None = None  # added by the emulator: the team's PagerDuty escalation policy


@dataclass
class User:
    id: str
    name: str
    email: str
    team_key: str | None = None  # added by the emulator: the team the user is on
    time_zone: str | None = None  # added by the emulator: None = the account's zone
    github_login: str | None = None  # added by the emulator: the user's GitHub login


@dataclass
class OwnershipPeriod:
    team_key: str
    valid_from: date | None = None  # None = since the beginning of history


@dataclass
class Service:
    id: str  # PagerDuty service id
    name: str
    owners: list[OwnershipPeriod]  # ordered by valid_from; the last one is the current owner
    repos: list[str] = field(default_factory=list)  # GitHub "owner/name" deploying this service
    escalation_policy_id: str = "PEP0001"
    created_at: datetime | None = None

    def owner_on(self, day: date) -> str:
        """The team key owning this service on ``day``."""
        owner = self.owners[0].team_key
        for period in self.owners:
            if period.valid_from is None or period.valid_from <= day:
                owner = period.team_key
        return owner


@dataclass(slots=True)  # no per-record __dict__: a large organisation holds millions
class LogEntry:
    id: str
    type: str  # one of LOG_ENTRY_TYPES (tests may use others to exercise tolerance)
    created_at: datetime
    incident_id: str
    agent_type: str = "service_reference"  # or "user_reference"
    agent_id: str | None = None
    channel_type: str = "api"
    assignees: list[str] = field(default_factory=list)  # user ids, for assign/delegate/escalate
    summary: str = ""
    note: str | None = None  # added by the emulator: the text of an annotate_log_entry
    notification_type: str | None = None  # added by the emulator: notify entries, e.g. "sms_notification"


@dataclass(slots=True)  # no per-record __dict__: a large organisation holds millions
class Incident:
    id: str
    number: int
    title: str
    service_id: str
    created_at: datetime
    urgency: str = "high"
    priority: str | None = None  # e.g. "P1".."P5", None when unset
    acknowledged_at: datetime | None = None  # first acknowledgement
    resolved_at: datetime | None = None
    resolve_reason: str | None = None  # "merge_resolve_reason" for merged-away incidents
    auto_resolved: bool = False  # resolved by the service's auto-resolve timeout
    log_entries: list[LogEntry] = field(default_factory=list)
    incident_key: str | None = None
    merged_into: str | None = None  # added by the emulator: surviving incident id when merged away


@dataclass
class DeploymentStatus:
    id: int
    state: str  # queued | in_progress | success | failure | error | inactive | pending
    created_at: datetime
    description: str = ""


@dataclass
class Deployment:
    id: int
    repo: str  # "owner/name"
    sha: str
    ref: str
    environment: str
    created_at: datetime
    creator_login: str | None = "deploy-bot"
    statuses: list[DeploymentStatus] = field(default_factory=list)  # oldest first
    task: str = "deploy"


@dataclass
class PullRequest:
    number: int
    repo: str
    title: str
    user_login: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    base_ref: str = "main"
    head_ref: str = "feature"


@dataclass
class Repo:
    id: int
    full_name: str  # "owner/name"
    private: bool = False
    accessible: bool = True  # False: the token cannot see it (the host answers 404)
    default_branch: str = "main"
    host: str = "github"  # the git host serving it: "github" or "gitlab"
    environment_tier_missing: bool = False  # GitLab: its environments have no tier (a GitLab before 13.10)


@dataclass
class Organisation:
    """Everything the emulator serves, plus the ground truth the generator injected."""

    teams: list[Team]
    services: list[Service]
    incidents: list[Incident]
    users: list[User] = field(default_factory=list)
    repos: list[Repo] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    pulls: list[PullRequest] = field(default_factory=list)
    github_org: str = "acme"
    account_time_zone: str = "America/Los_Angeles"  # PagerDuty account zone
    now: datetime | None = None  # the emulator clock; None = wall clock
    ground_truth: dict[str, Any] = field(default_factory=dict)

    def team_by_key(self, key: str) -> Team:
        for team in self.teams:
            if team.key == key:
                return team
        raise KeyError(key)

    def ownership_document(self) -> dict[str, Any]:
        """The ownership.yaml content describing this organisation (see docs/ownership.md)."""
        teams = []
        for t in self.teams:
            teams.append(
                {
                    "key": t.key,
                    "name": t.name,
                    "ids": {"pagerduty": t.id},
                    "time_zone": t.time_zone,
                    "business_hours": {
                        "start": t.business_hours_start,
                        "end": t.business_hours_end,
                        "days": [_DAY_NAMES[d] for d in t.business_days],
                    },
                    "adopted_on": t.adopted_on.isoformat() if t.adopted_on else None,
                }
            )
        services = []
        host = {r.full_name: r.host for r in self.repos}
        for s in self.services:
            services.append(
                {
                    "ids": {"pagerduty": s.id},
                    "name": s.name,
                    # a bare owner/name is a GitHub repo; another host's repo names its host
                    "repos": [name if host.get(name, "github") == "github" else {host[name]: name} for name in s.repos],
                    "owners": [
                        {"team": p.team_key, "from": p.valid_from.isoformat() if p.valid_from else None}
                        for p in s.owners
                    ],
                }
            )
        return {"version": 1, "teams": teams, "services": services}

    def ownership_yaml(self) -> str:
        return yaml.safe_dump(self.ownership_document(), sort_keys=False, allow_unicode=True)


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def utc_midnight(day: date) -> datetime:
    from datetime import timezone

    return datetime.combine(day, time(0, 0), tzinfo=timezone.utc)
