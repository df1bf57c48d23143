"""Seeded generator of a synthetic organisation (teams, services, incidents, deployments).

``generate_organisation(seed)`` returns an :class:`~emulator.model.Organisation` whose
records look like what PagerDuty and GitHub hold for a mid-sized engineering organisation, with
*known* effects injected: each team has a baseline resolution-time distribution (log-normal), a
service-ownership adoption date (or none) and a duration ratio applied after adoption. The truth is
stored in ``org.ground_truth`` so the statistics can be validated against it.

Everything is derived from ``numpy.random.default_rng(seed)``; the only wall-clock input is the
default ``end`` date (today, UTC). Same seed and config give an identical organisation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .model import (
    Deployment,
    DeploymentStatus,
    Incident,
    LogEntry,
    Organisation,
    OwnershipPeriod,
    PullRequest,
    Repo,
    Service,
    Team,
    User,
    utc_midnight,
)

__all__ = [
    "GeneratorConfig",
    "generate_organisation",
    "write_ground_truth",
    "write_ownership",
    "visible_incidents",
]


@dataclass
class GeneratorConfig:
    """Knobs of the synthetic organisation. Defaults give ~5,000 incidents and ~40,000 log entries."""

    n_teams: int = 10
    months: int = 24
    end: date | None = None  # history ends at 00:00 UTC of this day (= org.now); default today UTC
    future_days: int = 0  # also generate records after org.now (revealed by advancing the clock)
    services_per_team: int = 3
    users_per_team: int = 6
    new_services: int = 1  # services created mid-history (no incidents before their creation)
    service_moves: int | None = None  # services changing owner mid-history; default max(1, n_teams // 5)
    # incident volume: per-team monthly rate ~ lognormal(log(incidents_per_team_month), team_rate_sigma)
    incidents_per_team_month: float = 20.0
    team_rate_sigma: float = 0.25
    business_hours_weight: float = 2.0  # incident rate inside business hours relative to outside
    # durations: log-normal, team median ~ lognormal(log(duration_median_minutes), team_median_sigma)
    duration_median_minutes: float = 60.0
    sigma: float = 1.25
    team_median_sigma: float = 0.2
    share_urgency_low: float = 0.2
    share_no_priority: float = 0.35
    # lifecycle
    share_merged: float = 0.02
    share_auto_resolved: float = 0.03
    auto_resolve_hours: float = 4.0
    share_open_recent: float = 0.08  # incidents of the last open_window_days that never resolve
    open_window_days: int = 14
    share_retrigger: float = 0.01  # a resolved incident re-triggered (same incident_key) within hours
    share_acknowledged: float = 0.9
    ack_median_minutes: float = 4.0
    ack_sigma: float = 1.0
    ack_timeout_minutes: float = 30.0  # the service's acknowledgement_timeout
    share_reack: float = 0.06  # acknowledged incidents whose ack times out (unacknowledge) first
    escalation_delay_minutes: float = 15.0
    share_reassigned: float = 0.1
    share_delegated: float = 0.04
    share_annotated: float = 0.4
    share_late_note: float = 0.03  # a note added days after resolution (moves updated_at)
    share_sms_notify: float = 0.8  # assignments also notified by SMS (besides push)
    # adoption of service ownership
    share_never_adopt: float = 0.2
    effect_ratios: tuple[float, ...] = (0.5, 0.7, 1.0)
    adoption_months: tuple[int, int] | None = None  # default: months 8..18 of 24, scaled
    max_ramp_months: int = 2
    # GitHub
    deploys_per_repo_week: float = 2.0
    share_staging: float = 0.15
    share_deploy_failure: float = 0.08
    share_deploy_no_final_status: float = 0.01
    share_deploy_no_status: float = 0.005
    share_deploy_no_creator: float = 0.02
    share_deploy_incident: float = 0.06  # successful production deploys followed by an incident
    prs_per_deploy: float = 1.5
    share_pr_unmerged: float = 0.1
    inaccessible_repos: int = 0  # extra repos in the ownership file that the token cannot see
    # GitLab: the share of repos hosted there instead (in a nested group, github_org/platform/<name>),
    # and the share of those whose environments have no tier (the name then says which is production)
    gitlab_share: float = 0.0
    gitlab_share_without_tier: float = 0.25
    account_time_zone: str = "America/Los_Angeles"
    github_org: str = "acme"

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, date):
                v = v.isoformat()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


# --------------------------------------------------------------------------------------------
# vocabularies

_TEAM_NAMES = (
    "payments", "checkout", "search", "identity", "notifications", "platform", "data", "mobile",
    "billing", "growth", "ledger", "messaging", "catalog", "fraud", "logistics", "media",
)
_TEAM_SETUPS = (  # (zone, start, end, days)
    ("America/Los_Angeles", "09:00", "17:00", (0, 1, 2, 3, 4)),
    ("Europe/London", "09:00", "17:30", (0, 1, 2, 3, 4)),
    ("Europe/Berlin", "08:00", "16:00", (0, 1, 2, 3, 4)),
    ("Asia/Kolkata", "10:00", "18:00", (0, 1, 2, 3, 4)),
    ("America/New_York", "09:00", "17:00", (0, 1, 2, 3, 4)),
    ("Australia/Sydney", "08:30", "16:30", (0, 1, 2, 3, 4)),
    ("Asia/Jerusalem", "09:00", "18:00", (6, 0, 1, 2, 3)),  # Sunday-Thursday week
    ("America/Sao_Paulo", "09:00", "18:00", (0, 1, 2, 3, 4)),
    ("Asia/Tokyo", "09:30", "18:00", (0, 1, 2, 3, 4)),
    ("UTC", "08:00", "16:00", (0, 1, 2, 3, 4)),
    ("America/Chicago", "08:00", "17:00", (0, 1, 2, 3, 4)),
    ("Europe/Paris", "09:00", "17:00", (0, 1, 2, 3, 4)),
)
_SERVICE_SUFFIXES = ("api", "worker", "gateway", "db", "scheduler", "web", "cache", "stream")
_FIRST = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena",
    "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Victor", "Wen", "Yusuf",
)
_LAST = (
    "Okafor", "Schmidt", "Tanaka", "Silva", "Kowalski", "Haddad", "Nguyen", "Larsen", "Moreau",
    "Patel", "Cohen", "Rossi", "Andersson", "Mendes", "Ivanova", "Byrne", "Kaur", "Fischer",
)
_TITLES = (
    "High error rate on {s}",
    "Latency p99 above SLO on {s}",
    "{s}: disk usage above 90%",
    "{s} health check failing",
    "{s}: queue backlog growing",
    "5xx spike on {s}",
    "{s}: certificate expires soon",
    "{s} pods crash-looping",
    "{s}: replication lag high",
    "Memory pressure on {s}",
)
_NOTES = (
    "Rolled back the last deploy.",
    "Looking into it, dashboards attached.",
    "Root cause: upstream dependency timeout.",
    "Scaled out by two instances.",
    "Customer impact confirmed, status page updated.",
    "Postmortem scheduled.",
    "False alarm: threshold too tight, tuning it.",
)
_ALNUM = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
_PRIORITY_P = (0.05, 0.15, 0.3, 0.3, 0.2)


class _Ids:
    """PagerDuty-style ids drawn from the generator's rng (unique within the organisation)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def pd(self, prefix: str = "P", n: int = 6) -> str:
        while True:
            s = prefix + "".join(_ALNUM[self.rng.integers(0, 36, n)])
            if s not in self.seen:
                self.seen.add(s)
                return s

    def many(self, count: int, prefix: str, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < count:
            block = self.rng.integers(0, 36, size=(count - len(out), n))
            for row in block:
                s = prefix + "".join(_ALNUM[row])
                if s not in self.seen:
                    self.seen.add(s)
                    out.append(s)
        return out


def _sha(rng: np.random.Generator) -> str:
    return rng.bytes(20).hex()


def _add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    y += d.year
    m += 1
    last = [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
    return date(y, m, min(d.day, last))


def _in_business_hours(team: Team, dt: datetime) -> bool:
    local = dt.astimezone(ZoneInfo(team.time_zone))
    if local.weekday() not in team.business_days:
        return False
    hm = local.strftime("%H:%M")
    return team.business_hours_start <= hm < team.business_hours_end


# --------------------------------------------------------------------------------------------
# generation


@dataclass
class _Spec:
    """An incident before ids and log entries are assigned."""

    created_at: datetime
    service: Service
    team: Team
    duration_min: float  # natural time to resolve
    kind: str = "normal"  # normal | merged | retrigger | deploy
    parent: "_Spec | None" = None
    title: str = ""
    incident_key: str | None = None
    auto_resolved: bool = False
    never_resolves: bool = False
    resolved_at: datetime | None = None
    incident: Incident | None = None
    deployment_id: int | None = None


def _move_to_gitlab(repos: list[Repo], services: list[Service], repo_service: dict[str, Service],
                    cfg: GeneratorConfig, pick: random.Random) -> None:
    """Put ``cfg.gitlab_share`` of the repos on GitLab, in a nested group. A separate random stream,
    so that everything else about the organisation is the same as with no GitLab at all."""
    candidates = [r for r in repos if r.accessible]
    for repo in sorted(pick.sample(candidates, round(cfg.gitlab_share * len(candidates))), key=lambda r: r.full_name):
        old = repo.full_name
        repo.full_name = f"{cfg.github_org}/platform/{old.split('/', 1)[1]}"
        repo.host = "gitlab"
        repo.environment_tier_missing = pick.random() < cfg.gitlab_share_without_tier
        repo_service[repo.full_name] = repo_service.pop(old)
        for svc in services:
            svc.repos = [repo.full_name if name == old else name for name in svc.repos]


def generate_organisation(seed: int, config: GeneratorConfig | None = None) -> Organisation:
    """Build a deterministic synthetic organisation for ``seed``."""
    cfg = config or GeneratorConfig()
    rng = np.random.default_rng(seed)
    ids = _Ids(rng)
    end_day = cfg.end or datetime.now(timezone.utc).date()
    now = utc_midnight(end_day)
    start_day = _add_months(end_day, -cfg.months)
    start = utc_midnight(start_day)
    gen_end = now + timedelta(days=cfg.future_days)
    total_days = (gen_end - start).total_seconds() / 86400.0

    # ---- teams, adoption and effects
    n_teams = cfg.n_teams
    teams: list[Team] = []
    truth_teams: dict[str, dict[str, Any]] = {}
    n_never = min(n_teams - 1, max(1, round(cfg.share_never_adopt * n_teams))) if n_teams > 1 else 0
    roles: list[float | None] = [None] * n_never
    i = 0
    while len(roles) < n_teams:
        roles.append(cfg.effect_ratios[i % len(cfg.effect_ratios)])
        i += 1
    roles = [roles[j] for j in rng.permutation(n_teams)]
    if cfg.adoption_months is not None:
        lo_m, hi_m = cfg.adoption_months
    else:
        lo_m = max(1, round(cfg.months * 8 / 24))
        hi_m = max(lo_m, round(cfg.months * 18 / 24))
    for t in range(n_teams):
        key = _TEAM_NAMES[t] if t < len(_TEAM_NAMES) else f"team-{t + 1:02d}"
        zone, bh_start, bh_end, days = _TEAM_SETUPS[t % len(_TEAM_SETUPS)]
        team = Team(
            id=ids.pd(),
            key=key,
            name=key.replace("-", " ").title(),
            time_zone=zone,
            business_hours_start=bh_start,
            business_hours_end=bh_end,
            business_days=days,
            escalation_policy_id=ids.pd(),
        )
        ratio = roles[t]
        ramp = 0
        if ratio is not None:
            month = int(rng.integers(lo_m, hi_m + 1))
            first = _add_months(start_day, month)
            team.adopted_on = first + timedelta(days=int(rng.integers(0, 28)))
            ramp = int(rng.integers(0, cfg.max_ramp_months + 1))
        rate = float(cfg.incidents_per_team_month * math.exp(cfg.team_rate_sigma * rng.standard_normal()))
        median = float(cfg.duration_median_minutes * math.exp(cfg.team_median_sigma * rng.standard_normal()))
        teams.append(team)
        truth_teams[key] = {
            "team_id": team.id,
            "time_zone": zone,
            "adopted_on": team.adopted_on.isoformat() if team.adopted_on else None,
            "duration_ratio": ratio if ratio is not None else 1.0,
            "adopts": ratio is not None,
            "ramp_months": ramp,
            "incidents_per_month": round(rate, 3),
            "baseline_median_minutes": round(median, 3),
        }
    team_by_key = {t.key: t for t in teams}

    # ---- users
    users: list[User] = []
    users_by_team: dict[str, list[User]] = {}
    name_seen: set[str] = set()
    for team in teams:
        members = []
        for _ in range(cfg.users_per_team):
            while True:
                first = _FIRST[int(rng.integers(len(_FIRST)))]
                last = _LAST[int(rng.integers(len(_LAST)))]
                if len(name_seen) >= len(_FIRST) * len(_LAST):
                    # Every pairing is taken (large organisations): number the namesakes.
                    suffix = str(len(name_seen) // (len(_FIRST) * len(_LAST)) + 1)
                    last = f"{last}{suffix}"
                if f"{first} {last}" not in name_seen:
                    break
            name_seen.add(f"{first} {last}")
            login = f"{first[0]}{last}".lower()
            u = User(
                id=ids.pd(),
                name=f"{first} {last}",
                email=f"{first}.{last}@{cfg.github_org}.example".lower(),
                team_key=team.key,
                time_zone=team.time_zone,
                github_login=login,
            )
            members.append(u)
            users.append(u)
        users_by_team[team.key] = members

    # ---- services (and repos), with dated ownership
    services: list[Service] = []
    service_rate: dict[str, float] = {}
    for team in teams:
        weights = rng.dirichlet(np.full(cfg.services_per_team, 4.0))
        for j in range(cfg.services_per_team):
            name = f"{team.key}-{_SERVICE_SUFFIXES[j % len(_SERVICE_SUFFIXES)]}"
            if j >= len(_SERVICE_SUFFIXES):
                name += f"-{j}"
            svc = Service(
                id=ids.pd(),
                name=name,
                owners=[OwnershipPeriod(team.key, None)],
                repos=[f"{cfg.github_org}/{name}"],
                escalation_policy_id=team.escalation_policy_id or "PEP0001",
                created_at=start - timedelta(days=int(rng.integers(30, 400))),
            )
            services.append(svc)
            service_rate[svc.id] = truth_teams[team.key]["incidents_per_month"] * float(weights[j])
    # services created mid-history
    new_services = []
    for k in range(min(cfg.new_services, len(services))):
        svc = services[int(rng.integers(len(services)))]
        if svc in new_services:
            continue
        offset_days = int(rng.integers(int(total_days * 0.15), int(total_days * 0.35) + 1))
        svc.created_at = start + timedelta(days=offset_days, seconds=int(rng.integers(8 * 3600, 18 * 3600)))
        new_services.append(svc)
    # services moving to another team
    moves = []
    n_moves = cfg.service_moves if cfg.service_moves is not None else max(1, n_teams // 5)
    if n_teams > 1:
        candidates = [s for s in services if s not in new_services]
        for idx in rng.permutation(len(candidates))[: min(n_moves, len(candidates))]:
            svc = candidates[int(idx)]
            old = svc.owners[0].team_key
            others = [t.key for t in teams if t.key != old]
            new = others[int(rng.integers(len(others)))]
            on = start_day + timedelta(days=int(rng.integers(int(total_days * 0.2), int(total_days * 0.8))))
            svc.owners.append(OwnershipPeriod(new, on))
            svc.escalation_policy_id = team_by_key[new].escalation_policy_id or svc.escalation_policy_id
            moves.append({"service_id": svc.id, "service": svc.name, "from_team": old, "to_team": new, "on": on.isoformat()})

    def ratio_at(team: Team, when: datetime) -> float:
        tt = truth_teams[team.key]
        if team.adopted_on is None:
            return 1.0
        since = (when - utc_midnight(team.adopted_on)).total_seconds() / 86400.0
        if since < 0:
            return 1.0
        r = tt["duration_ratio"]
        ramp_days = tt["ramp_months"] * 30.44
        frac = 1.0 if ramp_days <= 0 else min(1.0, since / ramp_days)
        return 1.0 + (r - 1.0) * frac

    def draw_duration(team: Team, when: datetime) -> float:
        med = truth_teams[team.key]["baseline_median_minutes"] * ratio_at(team, when)
        return float(med * math.exp(cfg.sigma * rng.standard_normal()))

    # ---- incident arrival times per service
    specs: list[_Spec] = []
    for svc in services:
        s0 = max(start, svc.created_at or start)
        span_days = (gen_end - s0).total_seconds() / 86400.0
        if span_days <= 0:
            continue
        n = int(rng.poisson(service_rate[svc.id] * span_days / 30.44))
        times: list[datetime] = []
        while len(times) < n:
            cand = rng.uniform(0, span_days * 86400.0, size=max(16, 3 * (n - len(times))))
            acc = rng.random(cand.size)
            for sec, a in zip(cand, acc):
                when = s0 + timedelta(seconds=round(float(sec)))
                team = team_by_key[svc.owner_on(when.date())]
                w = cfg.business_hours_weight if _in_business_hours(team, when) else 1.0
                if a * max(cfg.business_hours_weight, 1.0) < w:
                    times.append(when)
                    if len(times) == n:
                        break
        for when in times:
            team = team_by_key[svc.owner_on(when.date())]
            specs.append(_Spec(when, svc, team, draw_duration(team, when)))
    specs.sort(key=lambda s: (s.created_at, s.service.id))

    # ---- GitHub repos, deployments, statuses, pull requests
    repos: list[Repo] = []
    repo_service: dict[str, Service] = {}
    for svc in services:
        for full in svc.repos:
            repos.append(Repo(id=int(rng.integers(10_000_000, 900_000_000)), full_name=full, private=bool(rng.random() < 0.7)))
            repo_service[full] = svc
    for k in range(cfg.inaccessible_repos):
        repos.append(Repo(id=int(rng.integers(10_000_000, 900_000_000)), full_name=f"{cfg.github_org}/legacy-{k + 1}", private=True, accessible=False))
    if cfg.gitlab_share > 0:
        _move_to_gitlab(repos, services, repo_service, cfg, random.Random(f"{seed}:gitlab"))
    deployments: list[Deployment] = []
    pulls: list[PullRequest] = []
    status_id = int(rng.integers(1_000_000, 2_000_000))
    deploy_id = int(rng.integers(100_000_000, 200_000_000))
    deploy_incident_specs: list[_Spec] = []
    bots = ("deploy-bot", "github-actions[bot]")
    for repo in repos:
        if not repo.accessible:
            continue
        svc = repo_service[repo.full_name]
        s0 = max(start, svc.created_at or start)
        weeks = (gen_end - s0).total_seconds() / (7 * 86400.0)
        if weeks <= 0:
            continue
        weekly = cfg.deploys_per_repo_week * math.exp(0.4 * rng.standard_normal())
        n = int(rng.poisson(weekly * weeks))
        secs = np.sort(rng.uniform(0, weeks * 7 * 86400.0, size=n))
        repo_deploys: list[Deployment] = []
        last_prod: datetime = s0 - timedelta(days=3)
        repo_pulls: list[PullRequest] = []
        team_members = users_by_team[svc.owners[0].team_key]
        for sec in secs:
            created = s0 + timedelta(seconds=round(float(sec)))
            staging = rng.random() < cfg.share_staging
            env = "staging" if staging else "production"
            deploy_id += int(rng.integers(1, 40))
            creator: str | None
            u = rng.random()
            if u < cfg.share_deploy_no_creator:
                creator = None
            elif u < 0.85:
                creator = bots[int(rng.integers(2))]
            else:
                owner_team = svc.owner_on(created.date())
                creator = users_by_team[owner_team][int(rng.integers(cfg.users_per_team))].github_login
            sha = _sha(rng)
            ref = "main"
            if not staging:
                # merged pull requests shipped by this deployment
                k = int(rng.poisson(cfg.prs_per_deploy))
                if k:
                    window = max(60.0, (created - last_prod).total_seconds() - 60)
                    merged_offsets = np.sort(rng.uniform(0, window, size=k))
                    for off in merged_offsets:
                        merged_at = last_prod + timedelta(seconds=30 + float(off))
                        merged_at = merged_at.replace(microsecond=0)
                        opened = merged_at - timedelta(minutes=float(20 * 60 * math.exp(1.0 * rng.standard_normal())))
                        author = users_by_team[svc.owner_on(merged_at.date())][int(rng.integers(cfg.users_per_team))]
                        pr_sha = _sha(rng)
                        repo_pulls.append(
                            PullRequest(
                                number=0,
                                repo=repo.full_name,
                                title=f"{_pr_title(rng)} in {svc.name}",
                                user_login=author.github_login or "dev",
                                # opened no earlier than two days before the history starts, unless it merged
                                # before that (the first deployment's can, up to 3 days before s0): always
                                # opened before it merges
                                created_at=max(opened, min(s0 - timedelta(days=2), merged_at - timedelta(minutes=10)))
                                .replace(microsecond=0),
                                updated_at=merged_at + timedelta(seconds=int(rng.integers(1, 90))),
                                closed_at=merged_at,
                                merged_at=merged_at,
                                merge_commit_sha=pr_sha,
                                head_ref=f"{author.github_login}/change-{int(rng.integers(1000, 9999))}",
                            )
                        )
                        sha = pr_sha
                last_prod = created
            else:
                if rng.random() < 0.4:
                    ref = f"release/{created:%Y.%m.%d}"
            dep = Deployment(
                id=deploy_id, repo=repo.full_name, sha=sha, ref=ref, environment=env,
                created_at=created, creator_login=creator,
            )
            # statuses: queued -> in_progress -> success | failure (or nothing yet)
            r = rng.random()
            if r >= cfg.share_deploy_no_status:
                t_q = created + timedelta(seconds=int(rng.integers(0, 20)))
                t_p = t_q + timedelta(seconds=int(rng.integers(10, 120)))
                t_f = t_p + timedelta(seconds=round(360 * math.exp(0.6 * rng.standard_normal())))
                status_id += 1
                dep.statuses.append(DeploymentStatus(status_id, "queued", t_q, "Deployment queued"))
                status_id += 1
                dep.statuses.append(DeploymentStatus(status_id, "in_progress", t_p, "Deployment started"))
                if rng.random() >= cfg.share_deploy_no_final_status / max(1e-9, 1 - cfg.share_deploy_no_status):
                    failed = rng.random() < cfg.share_deploy_failure
                    status_id += 1
                    dep.statuses.append(
                        DeploymentStatus(status_id, "failure" if failed else "success", t_f,
                                         "Deployment failed" if failed else "Deployment finished successfully")
                    )
                    if not failed and not staging and rng.random() < cfg.share_deploy_incident:
                        when = t_f + timedelta(minutes=min(23 * 60.0, 90 * math.exp(0.8 * rng.standard_normal())))
                        when = when.replace(microsecond=0)
                        team = team_by_key[svc.owner_on(when.date())]
                        deploy_incident_specs.append(
                            _Spec(when, svc, team, draw_duration(team, when), kind="deploy", deployment_id=dep.id,
                                  title=f"Error rate increased after deploy of {svc.name}")
                        )
            repo_deploys.append(dep)
        # closed-unmerged and still-open pull requests
        n_unmerged = int(rng.poisson(cfg.share_pr_unmerged * max(1, len(repo_pulls))))
        for _ in range(n_unmerged):
            opened = s0 + timedelta(seconds=float(rng.uniform(0, weeks * 7 * 86400.0)))
            opened = opened.replace(microsecond=0)
            closed = opened + timedelta(hours=float(48 * math.exp(rng.standard_normal())))
            author = team_members[int(rng.integers(len(team_members)))]
            closed = closed.replace(microsecond=0)
            repo_pulls.append(PullRequest(
                number=0, repo=repo.full_name, title=f"{_pr_title(rng)} (abandoned)", user_login=author.github_login or "dev",
                created_at=opened, updated_at=closed, closed_at=closed, head_ref=f"{author.github_login}/spike-{int(rng.integers(100, 999))}",
            ))
        for _ in range(int(rng.integers(0, 3))):
            opened = (gen_end - timedelta(hours=float(rng.uniform(2, 24 * 14)))).replace(microsecond=0)
            author = team_members[int(rng.integers(len(team_members)))]
            repo_pulls.append(PullRequest(
                number=0, repo=repo.full_name, title=f"{_pr_title(rng)} (work in progress)", user_login=author.github_login or "dev",
                created_at=opened, updated_at=opened + timedelta(minutes=int(rng.integers(1, 600))),
                head_ref=f"{author.github_login}/wip-{int(rng.integers(100, 999))}",
            ))
        repo_pulls.sort(key=lambda p: (p.created_at, p.title))
        for num, pr in enumerate(repo_pulls, start=1):
            pr.number = num
        pulls.extend(repo_pulls)
        deployments.extend(repo_deploys)

    specs.extend(deploy_incident_specs)

    # ---- lifecycle outcome per base incident
    open_from = now - timedelta(days=cfg.open_window_days)
    for sp in specs:
        if not sp.title:
            sp.title = _TITLES[int(rng.integers(len(_TITLES)))].format(s=sp.service.name)
        sp.incident_key = rng.bytes(16).hex()
        if rng.random() < cfg.share_auto_resolved:
            sp.auto_resolved = True
            sp.resolved_at = sp.created_at + timedelta(hours=cfg.auto_resolve_hours)
        elif sp.created_at >= open_from and rng.random() < cfg.share_open_recent:
            sp.never_resolves = True
        else:
            sp.resolved_at = sp.created_at + timedelta(seconds=max(30, round(sp.duration_min * 60)))

    # ---- re-triggers of resolved incidents (same incident_key, within hours)
    extra: list[_Spec] = []
    base = [s for s in specs if s.resolved_at is not None and not s.auto_resolved]
    n_re = int(round(cfg.share_retrigger * len(specs)))
    if base and n_re:
        for idx in rng.choice(len(base), size=min(n_re, len(base)), replace=False):
            parent = base[int(idx)]
            when = parent.resolved_at + timedelta(minutes=float(rng.uniform(5, 20 * 60)))
            when = when.replace(microsecond=0)
            team = team_by_key[parent.service.owner_on(when.date())]
            child = _Spec(when, parent.service, team, draw_duration(team, when), kind="retrigger", parent=parent,
                          title=parent.title, incident_key=parent.incident_key)
            child.resolved_at = when + timedelta(seconds=max(30, round(child.duration_min * 60)))
            extra.append(child)
    # ---- merged-away duplicates: a second incident merged into an open one on the same service
    n_merged = int(round(cfg.share_merged * len(specs)))
    long_enough = [s for s in specs if s.resolved_at is not None and (s.resolved_at - s.created_at) > timedelta(minutes=12)]
    if long_enough and n_merged:
        for idx in rng.choice(len(long_enough), size=min(n_merged, len(long_enough)), replace=False):
            parent = long_enough[int(idx)]
            dur = (parent.resolved_at - parent.created_at).total_seconds()
            when = parent.created_at + timedelta(seconds=float(rng.uniform(30, min(600.0, dur / 3))))
            when = when.replace(microsecond=0)
            child = _Spec(when, parent.service, parent.team, 0.0, kind="merged", parent=parent,
                          title=parent.title, incident_key=rng.bytes(16).hex())
            merge_at = when + timedelta(seconds=float(rng.uniform(60, 300)))
            child.resolved_at = min(merge_at, parent.resolved_at - timedelta(seconds=1)).replace(microsecond=0)
            child.duration_min = (child.resolved_at - when).total_seconds() / 60
            extra.append(child)
    specs.extend(extra)
    specs.sort(key=lambda s: (s.created_at, s.service.id, s.kind))

    # ---- ids, numbers, log entries
    inc_ids = ids.many(len(specs), "P", 6)
    incidents: list[Incident] = []
    for number, (sp, iid) in enumerate(zip(specs, inc_ids), start=1):
        priority = None if rng.random() < cfg.share_no_priority else _PRIORITIES[int(rng.choice(5, p=_PRIORITY_P))]
        inc = Incident(
            id=iid,
            number=number,
            title=sp.title,
            service_id=sp.service.id,
            created_at=sp.created_at.replace(microsecond=0),
            urgency="low" if rng.random() < cfg.share_urgency_low else "high",
            priority=priority,
            resolved_at=sp.resolved_at.replace(microsecond=0) if sp.resolved_at else None,
            resolve_reason="merge_resolve_reason" if sp.kind == "merged" else None,
            auto_resolved=sp.auto_resolved,
            incident_key=sp.incident_key,
        )
        sp.incident = inc
        incidents.append(inc)
    for sp in specs:
        if sp.kind == "merged":
            sp.incident.merged_into = sp.parent.incident.id
    all_users = users
    for sp in specs:
        _lifecycle(sp, cfg, rng, users_by_team, all_users)
    n_entries = sum(len(i.log_entries) for i in incidents)
    entry_ids = ids.many(n_entries, "R", 13)
    k = 0
    for inc in incidents:
        for e in inc.log_entries:
            e.id = entry_ids[k]
            k += 1

    org = Organisation(
        teams=teams,
        services=services,
        incidents=incidents,
        users=users,
        repos=repos,
        deployments=sorted(deployments, key=lambda d: (d.created_at, d.id)),
        pulls=pulls,
        github_org=cfg.github_org,
        account_time_zone=cfg.account_time_zone,
        now=now,
    )
    org.ground_truth = _ground_truth(org, seed, cfg, truth_teams, moves, new_services, specs)
    return org


def _pr_title(rng: np.random.Generator) -> str:
    verbs = ("Fix", "Add", "Refactor", "Bump", "Tune", "Remove", "Document", "Speed up")
    things = ("retry logic", "connection pool", "cache keys", "feature flag", "metrics", "timeouts", "schema migration", "logging")
    return f"{verbs[int(rng.integers(len(verbs)))]} {things[int(rng.integers(len(things)))]}"


def _lifecycle(sp: _Spec, cfg: GeneratorConfig, rng: np.random.Generator,
               users_by_team: dict[str, list[User]], all_users: list[User]) -> None:
    """Log entries of one incident (trigger, assign, notify, ack, escalate, ..., resolve)."""
    inc = sp.incident
    assert inc is not None
    svc = sp.service
    members = users_by_team[sp.team.key]
    entries: list[LogEntry] = []
    t0 = inc.created_at
    end = inc.resolved_at  # None: never resolves
    horizon = end if end is not None else t0 + timedelta(days=3650)

    def add(kind: str, when: datetime, agent_type: str, agent_id: str | None, channel: str,
            assignees: list[str] | None = None, summary: str = "", note: str | None = None,
            notification_type: str | None = None) -> None:
        entries.append(LogEntry(
            id="", type=kind, created_at=when.replace(microsecond=0), incident_id=inc.id,
            agent_type=agent_type, agent_id=agent_id, channel_type=channel,
            # Summaries repeat (a few templates per user): one string each, not one per entry.
            assignees=list(assignees or []), summary=sys.intern(summary), note=note, notification_type=notification_type,
        ))

    def notify(user: User, when: datetime) -> None:
        add("notify_log_entry", when, "service_reference", svc.id, "auto", [user.id],
            f"Notified {user.name} by push notification.", notification_type="push_notification")
        if rng.random() < cfg.share_sms_notify and when + timedelta(minutes=1) < horizon:
            add("notify_log_entry", when + timedelta(minutes=1), "service_reference", svc.id, "auto", [user.id],
                f"Notified {user.name} by SMS.", notification_type="sms_notification")
        phone_at = when + timedelta(minutes=5)
        if inc.urgency == "high" and phone_at < horizon and (ack_box[0] is None or ack_box[0] > phone_at):
            add("notify_log_entry", phone_at, "service_reference", svc.id, "auto", [user.id],
                f"Notified {user.name} by phone.", notification_type="phone_notification")

    # the first acknowledgement time is drawn up front: phone notifications stop once acknowledged
    ack_box: list[datetime | None] = [None]
    if sp.kind != "merged" and rng.random() < cfg.share_acknowledged:
        delay = cfg.ack_median_minutes * math.exp(cfg.ack_sigma * rng.standard_normal())
        cand = t0 + timedelta(seconds=max(10, round(delay * 60)))
        if cand < horizon - timedelta(seconds=30):
            ack_box[0] = cand
    channel = "api" if rng.random() < 0.85 else "email"
    add("trigger_log_entry", t0, "service_reference", svc.id, channel, summary=f"Triggered through the {'API' if channel == 'api' else 'email integration'}.")
    oncall = members[int(rng.integers(len(members)))]
    add("assign_log_entry", t0, "service_reference", svc.id, "auto", [oncall.id], f"Assigned to {oncall.name}.")
    notify(oncall, t0 + timedelta(seconds=int(rng.integers(1, 15))))
    current = oncall

    if sp.kind == "merged":
        by = members[int(rng.integers(len(members)))]
        parent_no = sp.parent.incident.number if sp.parent and sp.parent.incident else 0
        add("resolve_log_entry", end, "user_reference", by.id, "website",
            summary=f"Resolved by {by.name} through a merge into incident #{parent_no}.")
        entries.sort(key=lambda e: e.created_at)
        inc.log_entries = entries
        return

    # acknowledgement (possibly timing out and re-acknowledged)
    ack_at = ack_box[0]
    esc_at = t0 + timedelta(minutes=cfg.escalation_delay_minutes)
    if (ack_at is None or ack_at > esc_at) and esc_at < horizon:
        nxt = [m for m in members if m.id != current.id]
        target = nxt[int(rng.integers(len(nxt)))] if nxt else current
        add("escalate_log_entry", esc_at, "service_reference", svc.id, "timeout", [target.id],
            f"Escalated to level 2 by timeout ({target.name}).")
        notify(target, esc_at + timedelta(seconds=int(rng.integers(1, 10))))
        current = target
    if ack_at is not None:
        add("acknowledge_log_entry", ack_at, "user_reference", current.id, "website" if rng.random() < 0.6 else "sms",
            summary=f"Acknowledged by {current.name}.")
        inc.acknowledged_at = ack_at.replace(microsecond=0)
        unack_at = ack_at + timedelta(minutes=cfg.ack_timeout_minutes)
        if rng.random() < cfg.share_reack and unack_at < horizon - timedelta(minutes=2):
            add("unacknowledge_log_entry", unack_at, "service_reference", svc.id, "timeout",
                summary="Unacknowledged due to timeout.")
            notify(current, unack_at + timedelta(seconds=5))
            reack = unack_at + timedelta(seconds=max(20, round(180 * math.exp(0.8 * rng.standard_normal()))))
            if reack < horizon - timedelta(seconds=30):
                add("acknowledge_log_entry", reack, "user_reference", current.id, "website",
                    summary=f"Acknowledged by {current.name}.")
    # reassignment, delegation, notes in the life of the incident
    life_end = horizon if end is not None else min(horizon, t0 + timedelta(hours=12))
    life = (life_end - t0).total_seconds()
    if life > 300 and rng.random() < cfg.share_reassigned:
        when = t0 + timedelta(seconds=float(rng.uniform(0.3, 0.9)) * life)
        others = [m for m in members if m.id != current.id]
        if others:
            target = others[int(rng.integers(len(others)))]
            add("assign_log_entry", when, "user_reference", current.id, "website", [target.id],
                f"Reassigned from {current.name} to {target.name}.")
            notify(target, when + timedelta(seconds=3))
            current = target
    if life > 300 and rng.random() < cfg.share_delegated:
        when = t0 + timedelta(seconds=float(rng.uniform(0.3, 0.9)) * life)
        target = all_users[int(rng.integers(len(all_users)))]
        add("delegate_log_entry", when, "user_reference", current.id, "website", [target.id],
            f"Delegated to {target.name}'s escalation policy.")
        notify(target, when + timedelta(seconds=3))
        current = target
    if life > 120 and rng.random() < cfg.share_annotated:
        for _ in range(int(rng.integers(1, 3))):
            when = t0 + timedelta(seconds=float(rng.uniform(0.05, 0.95)) * life)
            author = members[int(rng.integers(len(members)))]
            note = _NOTES[int(rng.integers(len(_NOTES)))]
            add("annotate_log_entry", when, "user_reference", author.id, "note", summary=f"Note added by {author.name}.", note=note)
    if end is not None:
        if sp.auto_resolved:
            add("resolve_log_entry", end, "service_reference", svc.id, "timeout", summary="Resolved by timeout.")
        else:
            add("resolve_log_entry", end, "user_reference", current.id, "website" if rng.random() < 0.7 else "sms",
                summary=f"Resolved by {current.name}.")
        if rng.random() < cfg.share_late_note:
            when = end + timedelta(hours=float(rng.uniform(24, 120)))
            author = members[int(rng.integers(len(members)))]
            add("annotate_log_entry", when, "user_reference", author.id, "note", summary=f"Note added by {author.name}.",
                note="Postmortem: " + _NOTES[int(rng.integers(len(_NOTES)))])
    # entries at the same second keep their insertion order (trigger before assign)
    order = {id(e): n for n, e in enumerate(entries)}
    entries.sort(key=lambda e: (e.created_at, order[id(e)]))
    inc.log_entries = entries


# --------------------------------------------------------------------------------------------
# ground truth and files


def visible_incidents(org: Organisation, now: datetime | None = None) -> list[Incident]:
    """Incidents created at or before the clock."""
    clock = now or org.now
    if clock is None:
        return list(org.incidents)
    return [i for i in org.incidents if i.created_at <= clock]


def _ground_truth(org: Organisation, seed: int, cfg: GeneratorConfig, truth_teams: dict[str, dict[str, Any]],
                  moves: list[dict], new_services: list[Service], specs: list[_Spec]) -> dict[str, Any]:
    now = org.now
    svc_by_id = {s.id: s for s in org.services}
    for tt in truth_teams.values():
        tt["counts"] = {k: 0 for k in (
            "incidents", "incidents_visible", "merged", "auto_resolved", "open_at_now", "never_resolved",
            "before_adoption", "after_adoption", "log_entries")}
    for inc in org.incidents:
        svc = svc_by_id[inc.service_id]
        key = svc.owner_on(inc.created_at.date())
        c = truth_teams[key]["counts"]
        c["incidents"] += 1
        c["log_entries"] += len(inc.log_entries)
        visible = now is None or inc.created_at <= now
        c["incidents_visible"] += visible
        c["merged"] += inc.resolve_reason == "merge_resolve_reason"
        c["auto_resolved"] += inc.auto_resolved
        c["never_resolved"] += inc.resolved_at is None
        if visible and (inc.resolved_at is None or (now is not None and inc.resolved_at > now)):
            c["open_at_now"] += 1
        adopted = org.team_by_key(key).adopted_on
        if inc.resolve_reason != "merge_resolve_reason" and adopted is not None:
            if inc.created_at.date() < adopted:
                c["before_adoption"] += 1
            else:
                c["after_adoption"] += 1
    per_repo: dict[str, dict[str, int]] = {}
    for r in org.repos:
        per_repo[r.full_name] = {"deployments": 0, "production_deployments": 0, "statuses": 0, "pulls": 0,
                                 "merged_pulls": 0, "accessible": r.accessible}
    for d in org.deployments:
        pr = per_repo[d.repo]
        pr["deployments"] += 1
        pr["production_deployments"] += d.environment == "production"
        pr["statuses"] += len(d.statuses)
    for p in org.pulls:
        per_repo[p.repo]["pulls"] += 1
        per_repo[p.repo]["merged_pulls"] += p.merged_at is not None
    links = [[sp.deployment_id, sp.incident.id] for sp in specs if sp.kind == "deploy" and sp.incident]
    re_pairs = [[sp.parent.incident.id, sp.incident.id] for sp in specs if sp.kind == "retrigger" and sp.parent and sp.incident]
    merged_pairs = [[sp.incident.id, sp.parent.incident.id] for sp in specs if sp.kind == "merged" and sp.parent and sp.incident]
    totals = {
        "teams": len(org.teams),
        "services": len(org.services),
        "users": len(org.users),
        "incidents": len(org.incidents),
        "incidents_visible": sum(1 for i in org.incidents if now is None or i.created_at <= now),
        "log_entries": sum(len(i.log_entries) for i in org.incidents),
        "merged": sum(1 for i in org.incidents if i.resolve_reason == "merge_resolve_reason"),
        "auto_resolved": sum(1 for i in org.incidents if i.auto_resolved),
        "never_resolved": sum(1 for i in org.incidents if i.resolved_at is None),
        "open_at_now": sum(c["counts"]["open_at_now"] for c in truth_teams.values()),
        "retriggers": len(re_pairs),
        "deploy_caused_incidents": len(links),
        "repos": len(org.repos),
        "deployments": len(org.deployments),
        "deployment_statuses": sum(len(d.statuses) for d in org.deployments),
        "pulls": len(org.pulls),
    }
    return {
        "seed": seed,
        "config": cfg.to_json(),
        "now": now.isoformat() if now else None,
        "history_start": utc_midnight(_add_months(now.date(), -cfg.months)).isoformat() if now else None,
        "account_time_zone": org.account_time_zone,
        "duration_model": {
            "distribution": "lognormal",
            "sigma": cfg.sigma,
            "median_minutes": cfg.duration_median_minutes,
            "note": "minutes = team baseline median * ratio(t) * exp(sigma * N(0,1)); ratio(t) ramps linearly "
                    "from 1 to duration_ratio over ramp_months after adopted_on; auto-resolved incidents "
                    "resolve at auto_resolve_hours, merged ones within minutes",
        },
        "teams": truth_teams,
        "service_moves": moves,
        "new_services": [{"service_id": s.id, "service": s.name, "created_at": s.created_at.isoformat()} for s in new_services],
        "totals": totals,
        "per_repo": per_repo,
        "deploy_incident_links": links,
        "retriggers": re_pairs,
        "merges": merged_pairs,
    }


def write_ground_truth(org: Organisation, path: str | Path) -> Path:
    """Write ``org.ground_truth`` as JSON; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(org.ground_truth, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return p


def write_ownership(org: Organisation, path: str | Path) -> Path:
    """Write the organisation's ownership.yaml; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(org.ownership_yaml(), encoding="utf-8")
    return p
