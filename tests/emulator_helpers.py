"""Shared helpers for the emulator tests: small organisations and an OpenAPI response validator."""

from __future__ import annotations

import copy
import functools
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema

from emulator.generator import GeneratorConfig, generate_organisation
from emulator.model import (
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
)

UTC = timezone.utc
PD_TOKEN = "pd-test-token"
GH_TOKEN = "gh-test-token"
PD_HEADERS = {"Authorization": f"Token token={PD_TOKEN}"}
GH_HEADERS = {"Authorization": f"Bearer {GH_TOKEN}", "Accept": "application/vnd.github+json"}
# PagerDuty's official OpenAPI description (api-schema, 2026-08-14), kept beside the tests.
OPENAPI = Path(__file__).resolve().parent / "data" / "pagerduty-rest-openapiv3.json"
END = date(2026, 11, 1)


def t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def tiny_org() -> Organisation:
    """Three incidents on one service, clock at 2026-01-12T00:00Z.

    #1 PINC001 resolved (ack 10:05, resolve 11:00), #2 PINC002 acknowledged (P2, low urgency),
    #3 PINC003 triggered (hand-made without log entries). Plus one GitHub repo with 3 deployments.
    """
    team = Team(id="PTEAM01", key="payments", name="Payments", time_zone="America/New_York",
                escalation_policy_id="PEPAY01")
    other = Team(id="PTEAM02", key="search", name="Search", time_zone="Europe/Berlin")
    ada = User(id="PUSER01", name="Ada Okafor", email="ada@acme.example", team_key="payments", github_login="aokafor")
    ben = User(id="PUSER02", name="Ben Schmidt", email="ben@acme.example", team_key="payments", github_login="bschmidt")
    svc = Service(id="PSVC001", name="payments-api", owners=[OwnershipPeriod("search", None), OwnershipPeriod("payments", date(2026, 1, 1))],
                  repos=["acme/payments-api"], escalation_policy_id="PEPAY01", created_at=t("2025-01-01T00:00:00Z"))

    def le(i: str, kind: str, when: str, inc: str, agent_type: str = "service_reference", agent: str | None = "PSVC001",
           channel: str = "auto", assignees: list[str] | None = None, summary: str = "") -> LogEntry:
        return LogEntry(id=i, type=kind, created_at=t(when), incident_id=inc, agent_type=agent_type, agent_id=agent,
                        channel_type=channel, assignees=assignees or [], summary=summary)

    inc1 = Incident(id="PINC001", number=1, title="High error rate on payments-api", service_id="PSVC001",
                    created_at=t("2026-01-10T10:00:00Z"), acknowledged_at=t("2026-01-10T10:05:00Z"),
                    resolved_at=t("2026-01-10T11:00:00Z"), incident_key="key-1")
    inc1.log_entries = [
        le("RLOG0000000001", "trigger_log_entry", "2026-01-10T10:00:00Z", "PINC001", channel="api", summary="Triggered through the API."),
        le("RLOG0000000002", "assign_log_entry", "2026-01-10T10:00:00Z", "PINC001", assignees=["PUSER01"], summary="Assigned to Ada Okafor."),
        le("RLOG0000000003", "notify_log_entry", "2026-01-10T10:00:05Z", "PINC001", assignees=["PUSER01"]),
        le("RLOG0000000004", "acknowledge_log_entry", "2026-01-10T10:05:00Z", "PINC001", "user_reference", "PUSER01", "website"),
        le("RLOG0000000005", "resolve_log_entry", "2026-01-10T11:00:00Z", "PINC001", "user_reference", "PUSER01", "website"),
    ]
    inc2 = Incident(id="PINC002", number=2, title="Latency p99 above SLO on payments-api", service_id="PSVC001",
                    created_at=t("2026-01-11T12:00:00Z"), urgency="low", priority="P2",
                    acknowledged_at=t("2026-01-11T12:03:00Z"), incident_key="key-2")
    inc2.log_entries = [
        le("RLOG0000000006", "trigger_log_entry", "2026-01-11T12:00:00Z", "PINC002", channel="api"),
        le("RLOG0000000007", "assign_log_entry", "2026-01-11T12:00:00Z", "PINC002", assignees=["PUSER02"]),
        le("RLOG0000000008", "acknowledge_log_entry", "2026-01-11T12:03:00Z", "PINC002", "user_reference", "PUSER02", "sms"),
        le("RLOG0000000009", "resolve_log_entry", "2026-01-12T06:00:00Z", "PINC002", "user_reference", "PUSER02", "website"),
    ]
    inc2.resolved_at = t("2026-01-12T06:00:00Z")  # after the clock: still acknowledged at 2026-01-12T00:00Z
    inc3 = Incident(id="PINC003", number=3, title="payments-api health check failing", service_id="PSVC001",
                    created_at=t("2026-01-11T23:30:00Z"), priority="P1", incident_key="key-3")
    repo = Repo(id=4242, full_name="acme/payments-api")
    hidden = Repo(id=4343, full_name="acme/secret-repo", private=True, accessible=False)
    deps = []
    for k, (env, created) in enumerate([("production", "2026-01-09T10:00:00Z"), ("staging", "2026-01-10T09:00:00Z"),
                                        ("production", "2026-01-11T22:00:00Z")]):
        d = Deployment(id=1000 + k, repo="acme/payments-api", sha=f"{k:040x}", ref="main", environment=env, created_at=t(created))
        base = t(created)
        d.statuses = [DeploymentStatus(5000 + 3 * k, "queued", base + timedelta(seconds=5)),
                      DeploymentStatus(5001 + 3 * k, "in_progress", base + timedelta(minutes=1)),
                      DeploymentStatus(5002 + 3 * k, "success", base + timedelta(hours=3))]
        deps.append(d)
    pulls = [
        PullRequest(number=1, repo="acme/payments-api", title="Fix retries", user_login="aokafor", created_at=t("2026-01-08T09:00:00Z"),
                    updated_at=t("2026-01-09T09:30:00Z"), closed_at=t("2026-01-09T09:29:00Z"), merged_at=t("2026-01-09T09:29:00Z"),
                    merge_commit_sha="a" * 40),
        PullRequest(number=2, repo="acme/payments-api", title="Try a spike", user_login="bschmidt", created_at=t("2026-01-08T10:00:00Z"),
                    updated_at=t("2026-01-10T08:00:00Z"), closed_at=t("2026-01-10T08:00:00Z")),
        PullRequest(number=3, repo="acme/payments-api", title="Tune pool", user_login="aokafor", created_at=t("2026-01-11T08:00:00Z"),
                    updated_at=t("2026-01-12T10:00:00Z"), closed_at=t("2026-01-12T10:00:00Z"), merged_at=t("2026-01-12T10:00:00Z"),
                    merge_commit_sha="b" * 40),
    ]
    return Organisation(teams=[team, other], services=[svc], incidents=[inc1, inc2, inc3], users=[ada, ben],
                        repos=[repo, hidden], deployments=deps, pulls=pulls, now=t("2026-01-12T00:00:00Z"))


def many_incidents_org(n: int, start: str = "2026-01-01T00:00:00Z", step_minutes: int = 30) -> Organisation:
    """``n`` resolved incidents, one every ``step_minutes``; clock after the last one."""
    org = tiny_org()
    org.incidents = []
    base = t(start)
    for k in range(n):
        created = base + timedelta(minutes=step_minutes * k)
        org.incidents.append(Incident(id=f"PN{k:05d}", number=k + 1, title=f"Incident {k + 1}", service_id="PSVC001",
                                      created_at=created, resolved_at=created + timedelta(minutes=10)))
    org.now = base + timedelta(minutes=step_minutes * n + 60)
    return org


@functools.lru_cache(maxsize=4)
def _generated(seed: int, small: bool) -> Organisation:
    cfg = GeneratorConfig(end=END) if not small else GeneratorConfig(end=END, n_teams=3, months=6)
    return generate_organisation(seed, cfg)


def generated_org(seed: int = 7, small: bool = False, private: bool = False) -> Organisation:
    """A generated organisation (cached and shared: read only!). ``private=True``: a deep copy to mutate."""
    org = _generated(seed, small)
    return copy.deepcopy(org) if private else org


# ------------------------------------------------------------------------------------------------
# OpenAPI validation, in PagerDuty's documented terms: any non-required field may be null, and
# oneOf is read as anyOf. The spec's AcknowledgeLogEntry says "acknowledgement_log_entry" where the
# API (and the LogEntry enum) say "acknowledge_log_entry": both are accepted.


def _relax(node: Any) -> Any:
    if isinstance(node, list):
        return [_relax(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "oneOf":
            out["anyOf"] = _relax(v)
        elif k in ("discriminator", "example", "examples", "nullable", "readOnly", "writeOnly", "deprecated"):
            continue
        elif k in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(v, bool):
            continue
        else:
            out[k] = _relax(v)
    if isinstance(out.get("properties"), dict):
        required = set(out.get("required") or [])
        out["properties"] = {
            name: (schema if name in required else {"anyOf": [{"type": "null"}, schema]})
            for name, schema in out["properties"].items()
        }
    if out.get("enum") == ["acknowledgement_log_entry"]:
        out["enum"] = ["acknowledgement_log_entry", "acknowledge_log_entry"]
    return out


@functools.lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    spec = json.loads(OPENAPI.read_text())
    return {"components": _relax(spec["components"]), "paths": _relax(spec["paths"])}


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validate_pd_response(path: str, method: str, payload: Any, status: str = "200") -> None:
    """Raise jsonschema.ValidationError unless ``payload`` fits the OpenAPI response schema."""
    spec = _spec()
    ref = _pointer("paths", path, method, "responses", status, "content", "application/json", "schema")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **spec, "$ref": ref}
    jsonschema.Draft202012Validator(schema).validate(payload)


def validate_pd_schema(component: str, payload: Any) -> None:
    spec = _spec()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **spec, "$ref": _pointer("components", "schemas", component)}
    jsonschema.Draft202012Validator(schema).validate(payload)
