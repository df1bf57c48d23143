"""Shared pieces of the data-quality tests: hand-made organisations (clean and dirty), resources with
retries that do not sleep, and one call that materializes every asset and check against the emulator.

The dirty organisation packs many bad inputs into one run (each record is bad in its own way and
the test asserts each one separately), so the whole bad-input table costs a few pipeline runs.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb

from emulator.model import (
    Deployment,
    DeploymentStatus,
    Incident,
    LogEntry,
    Organisation,
    OwnershipPeriod,
    Repo,
    Service,
    Team,
    User,
)
from pipelines.connectors.github.resource import GitHubResource
from pipelines.connectors.gitlab.resource import GitLabResource
from pipelines.connectors.pagerduty.resource import PagerDutyResource
from pipelines.resources import OwnershipResource, WarehouseResource

ROOT = Path(__file__).resolve().parent.parent
UTC = timezone.utc
PD_TOKEN = "dq-pd-token-5b1e"
GH_TOKEN = "dq-gh-token-90c3"

# People in the organisation: their names and emails must never reach the snapshot or the report.
USERS = [
    User("PUSER01", "Zoë Ångström-Nakamura", "zoe.angstrom@example.org", team_key="red"),
    User("PUSER02", "Bartholomew Quarantino", "bart.quarantino@example.org", team_key="blue"),
]
UNICODE_TITLE = "Zahlungsdienst ausgefallen — 支付服务中断 — ошибка 🔥"
LONG_TITLE = "very long title " * 2_000  # 32,000 characters
SCRIPT = "<script>alert('pwned')</script>"
SQL_INJECTION = "x'); drop table marts.fct_incidents; --"
TEAM_NAME_INJECTION = f"Red {SCRIPT} Team"
SERVICE_NAME_INJECTION = f"svc-a {SQL_INJECTION}"


def t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def incident(id_, number, service, created, *, ack_s=120, resolve_s=1800, title=None, ack_at=None,
             agent="PUSER01", extra_entries=()):
    """An incident with trigger, assign, acknowledge (``ack_s`` after creation, or at ``ack_at``) and resolve."""
    c = t(created)
    entries = [LogEntry(f"L{id_}T", "trigger_log_entry", c, id_),
               LogEntry(f"L{id_}A", "assign_log_entry", c, id_, assignees=[agent])]
    ack = ack_at if ack_at is not None else (c + timedelta(seconds=ack_s) if ack_s is not None else None)
    if ack is not None:
        entries.append(LogEntry(f"L{id_}K", "acknowledge_log_entry", ack, id_, agent_type="user_reference",
                                agent_id=agent, channel_type="website"))
    resolved = c + timedelta(seconds=resolve_s) if resolve_s is not None else None
    if resolved is not None:
        entries.append(LogEntry(f"L{id_}Z", "resolve_log_entry", resolved, id_, agent_type="user_reference",
                                agent_id=agent, channel_type="website"))
    entries.extend(extra_entries)
    return Incident(id=id_, number=number, title=title or f"incident {number}", service_id=service, created_at=c,
                    acknowledged_at=ack if ack_at is None else None, resolved_at=resolved, log_entries=entries)


def clean_organisation() -> Organisation:
    """Two teams, two services, five ordinary incidents, one production deployment."""
    teams = [Team("PTRED01", "red", "Red Team", "Europe/Berlin", adopted_on=date(2025, 6, 1)),
             Team("PTBLU01", "blue", "Blue Team", "America/New_York")]
    services = [Service("PSVCA01", "svc-a", [OwnershipPeriod("red")], repos=["acme/svc-a"]),
                Service("PSVCB01", "svc-b", [OwnershipPeriod("blue")])]
    incidents = [
        incident("P001", 1, "PSVCA01", "2025-05-05 08:00:00", ack_s=120, resolve_s=1800),
        incident("P002", 2, "PSVCA01", "2025-05-06 06:00:00", ack_s=600, resolve_s=5400, agent="PUSER02"),
        incident("P003", 3, "PSVCA01", "2025-05-07 12:00:00", ack_s=60, resolve_s=3600),
        incident("P004", 4, "PSVCB01", "2025-05-20 15:00:00", ack_s=300, resolve_s=900, agent="PUSER02"),
        incident("P005", 5, "PSVCB01", "2025-05-22 02:00:00", ack_s=240, resolve_s=None),
    ]
    deployments = [Deployment(101, "acme/svc-a", "a" * 40, "main", "production", t("2025-05-20 13:00:00"),
                              statuses=[DeploymentStatus(1001, "success", t("2025-05-20 13:05:00"))])]
    return Organisation(teams=teams, services=services, incidents=incidents, users=list(USERS),
                        repos=[Repo(1, "acme/svc-a")], deployments=deployments, github_org="acme")


# id -> (what is wrong, the rule it must be quarantined under) for the dirty organisation
DIRTY_INCIDENTS = {
    "D003": (["drop:created_at"], "missing_field"),
    "D004": (['set:incident_number="4"'], "wrong_type"),
    "D005": (["naive"], "naive_timestamp"),
    "D007": (['set:resolved_at="2025-05-08T11:00:00Z"'], "resolved_before_created"),  # created 12:00
    "D011": (['set:created_at="2099-01-01T00:00:00Z"'], "implausible_timestamp"),
    "D012": (['set:created_at="2001-01-01T00:00:00Z"'], "implausible_timestamp"),
    "D014": (["drop:service"], "missing_field"),
    "D015": (['set:created_at=1746612000'], "wrong_type"),
    "D016": (['set:created_at="last tuesday"'], "bad_timestamp"),
}
DIRTY_LOG_ENTRIES = {
    "LD010K": (["drop:created_at"], "missing_field"),  # an acknowledgement without a time
    "LD002T": (['set:created_at="2025-05-06T06:00:00"'], "naive_timestamp"),
}
N_FILLER = 110  # > 100: list pages have an offset > 0, so the duplicate fault fires


def dirty_organisation() -> Organisation:
    """One organisation holding most bad inputs at once (see DIRTY_* and the docstring of each case)."""
    teams = [Team("PTRED01", "red", TEAM_NAME_INJECTION, "Europe/Berlin", adopted_on=date(2025, 6, 1)),
             Team("PTBLU01", "blue", "Blue Team", "America/New_York")]
    services = [
        Service("PSVCA01", SERVICE_NAME_INJECTION, [OwnershipPeriod("red")], repos=["acme/svc-a"]),
        Service("PSVCB01", "svc-b", [OwnershipPeriod("blue")]),
        Service("PSVCX01", "svc-orphan", [OwnershipPeriod("blue")]),  # left out of the ownership file below
    ]
    mystery = LogEntry("LD001M", "mystery_log_entry", t("2025-05-05 08:01:00"), "D001")
    incidents = [
        # clean ones, with awkward text
        incident("D001", 1, "PSVCA01", "2025-05-05 08:00:00", title=UNICODE_TITLE, extra_entries=[mystery]),
        incident("D002", 2, "PSVCA01", "2025-05-06 06:00:00", title=LONG_TITLE, ack_s=600, resolve_s=5400),
        incident("D006", 6, "PSVCA01", "2025-05-06 09:00:00", ack_s=300, resolve_s=3600),  # served with +05:30
        incident("D010", 10, "PSVCA01", "2025-05-09 10:00:00", title=f"{SCRIPT} {SQL_INJECTION}"),
        # an acknowledgement before the incident was created, one after it was resolved
        incident("D008", 8, "PSVCA01", "2025-05-08 09:00:00", ack_at=t("2025-05-08 08:50:00")),
        incident("D013", 13, "PSVCA01", "2025-05-08 14:00:00", ack_at=t("2025-05-08 15:00:00"), resolve_s=1800),
        # a service with no owner in the ownership file
        incident("D009", 9, "PSVCX01", "2025-05-09 12:00:00"),
        # bad records (DIRTY_INCIDENTS)
        incident("D003", 3, "PSVCA01", "2025-05-07 12:00:00"),
        incident("D004", 4, "PSVCA01", "2025-05-07 13:00:00"),
        incident("D005", 5, "PSVCA01", "2025-05-07 14:00:00"),
        incident("D007", 7, "PSVCA01", "2025-05-08 12:00:00"),
        incident("D011", 11, "PSVCA01", "2025-05-10 10:00:00"),
        incident("D012", 12, "PSVCA01", "2025-05-10 11:00:00"),
        incident("D014", 14, "PSVCA01", "2025-05-10 12:00:00"),
        incident("D015", 15, "PSVCA01", "2025-05-10 13:00:00"),
        incident("D016", 16, "PSVCA01", "2025-05-10 14:00:00"),
    ]
    for k in range(N_FILLER):  # ordinary incidents on svc-b, one an hour from 2025-04-01
        incidents.append(incident(f"F{k:03d}", 100 + k, "PSVCB01",
                                  (t("2025-04-01 00:00:00") + timedelta(hours=k)).strftime("%Y-%m-%d %H:%M:%S"),
                                  ack_s=60, resolve_s=600, agent="PUSER02"))
    deployments = [
        Deployment(101, "acme/svc-a", "a" * 40, "main", "production", t("2025-05-05 07:00:00"),
                   statuses=[DeploymentStatus(1001, "success", t("2025-05-05 07:05:00"))]),
        Deployment(102, "acme/svc-a", "b" * 40, "main", "prod-eu-west", t("2025-05-06 07:00:00"),
                   statuses=[DeploymentStatus(1002, "in_progress", t("2025-05-06 07:01:00")),
                             DeploymentStatus(1003, "exploded", t("2025-05-06 07:02:00"))]),
    ]
    return Organisation(teams=teams, services=services, incidents=incidents, users=list(USERS),
                        repos=[Repo(1, "acme/svc-a")], deployments=deployments, github_org="acme")


def dirty_ownership_yaml(org: Organisation) -> str:
    """The ownership file of the dirty organisation, without svc-orphan (a service with no owner)."""
    import yaml

    doc = org.ownership_document()
    doc["services"] = [s for s in doc["services"] if s["ids"]["pagerduty"] != "PSVCX01"]
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def start_emulator(org: Organisation, **kw):
    from emulator.server import EmulatorServer

    return EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, **kw).start()


# ----------------------------------------------------------------------------------- resources


class FastPagerDuty(PagerDutyResource):
    """The real client, with retries that do not sleep (the tests' faults are retried in ms)."""

    def client(self):
        from pipelines.connectors.pagerduty.client import PagerDutyClient

        return PagerDutyClient(self.api_url.rstrip("/"), self.api_token, rate_per_minute=None,
                               concurrency=self.concurrency, timeout=self.timeout_seconds, sleep=lambda s: None)


class FastGitHub(GitHubResource):
    def client(self):
        from pipelines.connectors.github.client import GitHubClient

        return GitHubClient(self.api_url.rstrip("/"), self.token, concurrency=self.concurrency,
                            timeout=self.timeout_seconds, sleep=lambda s: None)


def resources(srv, data_dir: Path, ownership_path: Path, *, pd_token: str = PD_TOKEN, gh_token: str = GH_TOKEN):
    return {
        "pagerduty": FastPagerDuty(api_url=srv.pagerduty_url, api_token=pd_token, timeout_seconds=5.0),
        "github": FastGitHub(api_url=srv.github_url, token=gh_token, timeout_seconds=5.0),
        "gitlab": GitLabResource(api_url=srv.gitlab_url, timeout_seconds=5.0),
        "ownership": OwnershipResource(path=str(ownership_path)),
        "warehouse": WarehouseResource(data_dir=str(data_dir), history_days=1000),
    }


def everything():
    """Every asset and every asset check of the code location."""
    from assets.checks import all_checks
    from pipelines.definitions import all_assets

    return [*all_assets, *all_checks]


def run_pipeline(srv, tmp_path: Path, ownership_text: str, *, instance=None, **kw) -> dg.ExecuteInProcessResult:
    """Materialize every asset and check against the emulator into ``tmp_path/data`` (never raises)."""
    ownership = tmp_path / "ownership.yaml"
    ownership.write_text(ownership_text, encoding="utf-8")
    return dg.materialize(everything(), resources=resources(srv, tmp_path / "data", ownership, **kw),
                          instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


# ----------------------------------------------------------------------------------- results


@dataclass
class RunView:
    """What a test looks at after a run: materialized assets, check results, step failures."""

    result: dg.ExecuteInProcessResult

    @property
    def materialized(self) -> set[str]:
        return {e.event_specific_data.materialization.asset_key.to_user_string()
                for e in self.result.get_asset_materialization_events()}

    def checks(self) -> dict[str, dg.AssetCheckEvaluation]:
        out = {}
        for e in self.result.get_asset_check_evaluations():
            out[f"{e.asset_key.to_user_string()}:{e.check_name}"] = e
        return out

    def failure_messages(self) -> list[str]:
        messages = []
        for event in self.result.all_events:
            if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                err = event.step_failure_data.error
                text = [err.message]
                while err.cause is not None:
                    err = err.cause
                    text.append(err.message)
                messages.append(f"{event.step_key}: " + " | ".join(m.strip() for m in text))
        return messages


def table_contents(path: Path) -> dict[str, list]:
    """Every raw, staging, marts and quarantine table of a warehouse file (sync_runs aside), sorted."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "where schema_name in ('raw', 'staging', 'intermediate', 'marts', 'quarantine') and table_name <> 'sync_runs' order by 1"
        ).fetchall()
        return {n: con.execute(f"select * from {n} order by all").fetchall() for (n,) in names}
    finally:
        con.close()


def quarantine_rows(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select source, stream, record_id, rule, reason, payload from quarantine.rejected_records "
                           "order by source, stream, record_id, rule").fetchall()
    finally:
        con.close()


def cli(args: list[str], env: dict[str, str], *, fast_retries: bool = True, timeout: float = 120
        ) -> subprocess.CompletedProcess:
    """``incident-metrics ARGS`` in a fresh process. ``fast_retries`` only shortens the HTTP backoff
    (0.5 s base) to 1 ms so that a run against a dead port gives up in well under a second."""
    prelude = ("import pipelines.http as h; h.HttpClient.__init__.__kwdefaults__['backoff_base'] = 0.001; "
               if fast_retries else "")
    code = prelude + f"from pipelines.cli import main; raise SystemExit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
