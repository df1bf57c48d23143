"""Shared helpers for the incremental, crash-safety, snapshot and backfill tests.

* :func:`small_org`: a generated organisation (3 teams, 6 months) whose history ends 30 days before
  today, with ``future_days`` of records after the emulator clock that advancing the clock reveals
  (new incidents, resolutions of old ones, late acknowledgements, new deployments). History ends in
  the past so the pipeline's wall-clock ``now`` is always after the emulator clock.
* :func:`materialize_all`: the whole nightly asset graph in-process against the emulator.
* :func:`warehouse_state` / :func:`diff_states`: the warehouse table by table, in a form where two
  warehouses that hold the same data compare equal (see the docstring of ``warehouse_state``).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from emulator.generator import GeneratorConfig, generate_organisation
from emulator.model import Organisation

UTC = timezone.utc
PD_TOKEN = "incr-pd-token-5b1e"
GH_TOKEN = "incr-gh-token-c2d8"
GL_TOKEN = "incr-gl-token-5e1a"
ROOT = Path(__file__).resolve().parent.parent

# Columns that say when/by which run a row was written, not what the data is.
RUN_COLUMNS = {
    "raw": {"fetched_at", "run_id"},
    "raw.sync_state": {"updated_at", "run_id"},
    "quarantine.rejected_records": {"run_id", "rejected_at"},
}
# raw.sync_runs is the per-run log: it grows by design and is not part of the data.
EXCLUDED_TABLES = {"raw.sync_runs"}
JSON_TABLES = ("raw.pagerduty_teams", "raw.pagerduty_services", "raw.pagerduty_incidents",
               "raw.pagerduty_log_entries", "raw.github_deployments", "raw.github_deployment_statuses",
               "raw.github_pull_requests")


def small_org(seed: int = 11, *, future_days: int = 5, months: int = 6, n_teams: int = 3,
              history_end_days_ago: int = 30, incidents_per_team_month: float = 40.0,
              deploys_per_repo_week: float = 1.0, gitlab_share: float = 0.0) -> Organisation:
    end = datetime.now(UTC).date() - timedelta(days=history_end_days_ago)
    return generate_organisation(seed, GeneratorConfig(
        n_teams=n_teams, months=months, end=end, future_days=future_days,
        incidents_per_team_month=incidents_per_team_month, deploys_per_repo_week=deploys_per_repo_week,
        gitlab_share=gitlab_share))


def start_emulator(org: Organisation):
    from emulator.server import EmulatorServer

    return EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, gitlab_token=GL_TOKEN).start()


def resources(srv, data_dir: Path, ownership_path: Path, *, history_days: int = 730) -> dict[str, Any]:
    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.resources import OwnershipResource, WarehouseResource

    return {
        "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN),
        "github": GitHubResource(api_url=srv.github_url, token=GH_TOKEN),
        "gitlab": GitLabResource(api_url=srv.gitlab_url, token=GL_TOKEN),
        "ownership": OwnershipResource(path=str(ownership_path)),
        "warehouse": WarehouseResource(data_dir=str(data_dir), history_days=history_days),
    }


def write_ownership(org: Organisation, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ownership.yaml"
    path.write_text(org.ownership_yaml(), encoding="utf-8")
    return path


def materialize_all(srv, data_dir: Path, ownership_path: Path, *, with_report: bool = False,
                    history_days: int = 730):
    """One nightly run in-process against the emulator: every asset of the code location, except
    the leadership report unless ``with_report`` (it takes seconds and writes nothing to the
    warehouse; tests/test_end_to_end.py covers it)."""
    import dagster as dg

    from pipelines.definitions import all_assets

    selection = None if with_report else dg.AssetSelection.all() - dg.AssetSelection.assets(["reports", "baseline_report"])
    result = dg.materialize(all_assets, resources=resources(srv, data_dir, ownership_path, history_days=history_days),
                            instance=dg.DagsterInstance.ephemeral(), selection=selection)
    assert result.success
    return result


def night(srv, data_dir: Path, ownership_path: Path) -> int:
    """Run one night and return the number of API requests it made (the emulator's counters)."""
    srv.reset_stats()
    materialize_all(srv, data_dir, ownership_path)
    return int(srv.stats()["requests"])


def subprocess_env(srv, data_dir: Path, ownership_path: Path) -> dict[str, str]:
    """Environment for ``incident-metrics run`` (or ``pipelines.cli``) in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGERDUTY", "GITHUB", "GITLAB", "INCIDENT_METRICS",
                                                                                "DAGSTER_HOME"))}
    env.update({
        "PAGERDUTY_API_URL": srv.pagerduty_url,
        "PAGERDUTY_API_TOKEN": PD_TOKEN,
        "GITHUB_API_URL": srv.github_url,
        "GITHUB_TOKEN": GH_TOKEN,
        "GITLAB_API_URL": srv.gitlab_url,
        "GITLAB_TOKEN": GL_TOKEN,
        "INCIDENT_METRICS_OWNERSHIP": str(ownership_path),
        "INCIDENT_METRICS_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    })
    return env


PYTHON = sys.executable


# ----------------------------------------------------------------------------------- comparison


def warehouse_state(path: Path, *, ignore_columns: dict[str, set[str]] | None = None,
                    quarantine_volatile: set[str] = frozenset()) -> dict[str, dict[Any, Any]]:
    """Every table of the warehouse as ``{table: {key: row}}``, comparable across warehouses.

    * ``raw.sync_runs`` is left out (a per-run log), and so are the columns that record when and by
      which run a row was written (``fetched_at``, ``run_id``, ``updated_at`` of ``sync_state``,
      ``rejected_at``): an unchanged record keeps the values of its first fetch by design.
    * Raw JSON tables are keyed by id with the payload parsed, so a difference can be located to
      the JSON paths that differ (:func:`diff_states`).
    * Other tables are keyed by row position after sorting all columns (multisets of rows).
    * ``ignore_columns`` leaves out more columns (``{"schema.table": {...}}``) and
      ``quarantine_volatile`` removes JSON paths from the payloads kept in quarantine, for the
      differences a test has explained.
    """
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "where database_name = current_database() and schema_name in ('raw', 'staging', 'intermediate', 'marts', 'quarantine') "
            "order by 1").fetchall()]
        state: dict[str, dict[Any, Any]] = {}
        for name in names:
            if name in EXCLUDED_TABLES:
                continue
            schema = name.split(".")[0]
            skip = (RUN_COLUMNS.get(name) or RUN_COLUMNS.get(schema, set())) | (ignore_columns or {}).get(name, set())
            cols = [r[0] for r in con.execute(
                "select column_name from duckdb_columns() where database_name = current_database() "
                "and schema_name || '.' || table_name = ? order by column_index", [name]).fetchall()
                if r[0] not in skip]
            if name in JSON_TABLES:
                other = [c for c in cols if c not in ("id", "payload")]
                rows = con.execute(f"select id, payload::varchar, {', '.join(other) or 'null'} from {name}").fetchall()
                state[name] = {r[0]: (json.loads(r[1]), tuple(r[2:])) for r in rows}
            else:
                sel = ", ".join(f'"{c}"' for c in cols)
                rows = con.execute(f"select {sel} from {name} order by all").fetchall()
                if name == "quarantine.rejected_records" and quarantine_volatile:
                    i = cols.index("payload")
                    rows = [r[:i] + (_strip_json(r[i], quarantine_volatile),) + r[i + 1:] for r in rows]
                state[name] = {i: tuple(_normal(v) for v in r) for i, r in enumerate(rows)}
        return state
    finally:
        con.close()


def _strip_json(text: str | None, paths: set[str]) -> str | None:
    try:
        return json.dumps(without_paths(json.loads(text), paths), sort_keys=True)
    except (TypeError, ValueError):
        return text


def _normal(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return "NaN"
    if isinstance(v, list):
        return tuple(_normal(x) for x in v)
    return v


def json_diff_paths(a: Any, b: Any, prefix: str = "") -> set[str]:
    """The JSON paths (``a.b.c``) where two parsed JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in a or k not in b:
                out.add(p)
            else:
                out |= json_diff_paths(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = set()
        for i, (x, y) in enumerate(zip(a, b)):
            out |= json_diff_paths(x, y, f"{prefix}[]")
        return out
    return set() if a == b else {prefix or "$"}


def diff_states(a: dict[str, dict], b: dict[str, dict]) -> dict[str, Any]:
    """``{table: description}`` of every difference between two warehouse states.

    For raw JSON tables: ``{"missing": ids only in b, "extra": ids only in a,
    "changed": {id: sorted JSON paths that differ}}``. Other tables: ``{"only_a": rows, "only_b": rows}``.
    """
    out: dict[str, Any] = {}
    for table in sorted(set(a) | set(b)):
        ta, tb = a.get(table), b.get(table)
        if ta is None or tb is None:
            out[table] = "table missing on one side"
            continue
        if table in JSON_TABLES:
            changed = {}
            for k in set(ta) & set(tb):
                if ta[k] != tb[k]:
                    paths = json_diff_paths(ta[k][0], tb[k][0])
                    if ta[k][1] != tb[k][1]:
                        paths.add("<columns>")
                    changed[k] = sorted(paths)
            missing, extra = sorted(set(tb) - set(ta)), sorted(set(ta) - set(tb))
            if changed or missing or extra:
                out[table] = {"missing": missing, "extra": extra, "changed": changed}
        else:
            ra, rb = sorted(ta.values(), key=repr), sorted(tb.values(), key=repr)
            if ra != rb:
                sa, sb = set(ra), set(rb)
                out[table] = {"only_a": sorted(sa - sb, key=repr)[:10], "only_b": sorted(sb - sa, key=repr)[:10]}
    return out


def row_counts(state: dict[str, dict]) -> dict[str, int]:
    return {t: len(v) for t, v in state.items()}


def without_paths(obj: Any, paths: set[str]) -> Any:
    """A copy of a parsed JSON value with the dotted ``paths`` removed (``a.b``; lists as ``a[].b``)."""
    import copy

    out = copy.deepcopy(obj)
    for path in paths:
        _drop(out, path.replace("[]", "").split("."))
    return out


def _drop(obj: Any, parts: list[str]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _drop(item, parts)
        return
    if not isinstance(obj, dict) or parts[0] not in obj:
        return
    if len(parts) == 1:
        del obj[parts[0]]
    else:
        _drop(obj[parts[0]], parts[1:])


# ----------------------------------------------------------------------------------- clocks


FINAL_STATES = {"success", "failure", "error", "inactive"}


def deployment_in_flight(org: Organisation, t: datetime) -> bool:
    """A deployment exists at ``t`` whose final status comes later (in_progress tonight, final tomorrow)."""
    for d in org.deployments:
        if d.created_at <= t:
            finals = [s.created_at for s in d.statuses if s.state in FINAL_STATES]
            if finals and min(finals) > t:
                return True
    return False


def incident_unacknowledged(org: Organisation, t: datetime) -> bool:
    """An incident is triggered at ``t`` and will be acknowledged, then resolved, within the next day."""
    return any(i.created_at <= t < i.acknowledged_at and i.resolved_at is not None
               and i.resolved_at < t + timedelta(hours=20)
               for i in org.incidents if i.acknowledged_at is not None)


def incident_open(org: Organisation, t: datetime) -> bool:
    """An incident is open at ``t`` and will be resolved within the next day."""
    return any(i.created_at <= t < i.resolved_at < t + timedelta(hours=20)
               for i in org.incidents if i.resolved_at is not None)


def pick_clock(org: Organisation, after: datetime, predicate, *, hours: tuple[float, float] = (12, 40)) -> datetime:
    """The first instant (minute steps) between ``after`` + hours[0] and + hours[1] where
    ``predicate(org, t)`` holds: a night that lands while something is in flight."""
    t = after + timedelta(hours=hours[0], seconds=30)
    end = after + timedelta(hours=hours[1])
    while t < end:
        if predicate(org, t):
            return t
        t += timedelta(minutes=1)
    raise AssertionError(f"no instant between {after} + {hours} h satisfies {predicate.__name__}")
