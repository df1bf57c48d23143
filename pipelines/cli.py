"""The ``incident-metrics`` command: demo, run, backfill, report, emulator, compare.

    incident-metrics demo       the whole nightly job against the bundled emulator, then where the results are
    incident-metrics run        the nightly job, in-process, configured from the environment
    incident-metrics backfill   re-read a historical range (--since DATE [--until DATE]), then rebuild
    incident-metrics rebuild    rebuild staging, marts, report and snapshot from raw, without any API call
    incident-metrics report     re-render the report from the warehouse, without syncing
    incident-metrics emulator   serve the synthetic organisation's APIs on 127.0.0.1 (emulator/)
    incident-metrics compare    the before/after statistics on any incident table (CSV or Parquet)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

from pipelines import config


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def log_file_for(command: str) -> Path:
    """Where a CLI run's whole log goes: ``<data dir>/logs/<command>-<UTC time>.log``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return config.DataPaths.from_env().root / "logs" / f"{command}-{stamp}.log"


def _loggers(console_level: str, log_file: Path) -> dict:
    return {"console": {"config": {"log_level": console_level}}, "file": {"config": {"path": str(log_file)}}}


def _execute(job_name: str, run_config: dict, log_file: Path, *, raise_on_error: bool, on_failure: str) -> bool:
    """Run a job of the code location in this process. On failure, stderr says why: one line for
    a problem the user can fix (pipelines/errors.py); otherwise a line per failed step, where the
    stack traces are (``log_file``) and ``on_failure``."""
    from pipelines.definitions import defs
    from pipelines.errors import failure_lines, step_failures

    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=_instance(), raise_on_error=raise_on_error, run_config=run_config)
    if not result.success:
        lines = failure_lines(step_failures(result), str(log_file))
        if not lines or lines[-1].startswith("stack traces:"):
            lines.append(on_failure)
        print("\n".join(lines), file=sys.stderr)
    return result.success


def run_nightly(*, raise_on_error: bool = False) -> bool:
    """Run the nightly job in this process with the configuration in the environment."""
    log_file = log_file_for("run")
    # progress lines (context.log.info) on the terminal, not every engine event
    return _execute("nightly", {"loggers": _loggers("INFO", log_file)}, log_file, raise_on_error=raise_on_error,
                    on_failure="nightly run failed; the warehouse keeps the last complete state")


def run_rebuild(*, raise_on_error: bool = False) -> bool:
    """Run the ``rebuild`` job: staging, marts, report and snapshot from raw, no API call."""
    log_file = log_file_for("rebuild")
    return _execute("rebuild", {"loggers": _loggers("INFO", log_file)}, log_file, raise_on_error=raise_on_error,
                    on_failure="rebuild failed; the warehouse keeps the last complete state")


def run_backfill(since: str, until: str | None = None, *, window_days: int = 7, echo_progress: bool = True,
                 raise_on_error: bool = False) -> bool:
    """Run the ``backfill`` job in this process: re-read [since, until) and rebuild downstream."""
    log_file = log_file_for("backfill")
    run_config: dict = {"since": since, "window_days": window_days, "echo_progress": echo_progress,
                        # the progress lines are printed plainly; the console log only shows problems
                        "log_level": "WARNING" if echo_progress else "INFO", "log_file": str(log_file)}
    if until:
        run_config["until"] = until
    return _execute("backfill", run_config, log_file, raise_on_error=raise_on_error,
                    on_failure="backfill failed; finished windows are kept, run it again to complete")


def cmd_backfill(args: argparse.Namespace) -> int:
    from pipelines.ingest.runner import BackfillRange

    try:
        rng = BackfillRange.parse(args.since, args.until, now=datetime.now(timezone.utc), window_days=args.window_days)
    except ValueError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"backfill {rng.since:%Y-%m-%d %H:%M} to {rng.until:%Y-%m-%d %H:%M} UTC, "
          f"{len(rng.windows())} windows of {args.window_days} days", flush=True)
    ok = _guarded(lambda: run_backfill(args.since, args.until, window_days=args.window_days))
    if ok is not True:
        return ok or 1
    _print_results(started, "backfill (bookmarks unchanged)")
    return 0


def _missing_setting(exc: Exception) -> str | None:
    """The environment variable Dagster could not read, from its config error; None otherwise."""
    import re

    match = re.search(r'environment variable "([A-Z0-9_]+)" which is not set', str(exc))
    return match.group(1) if match else None


def _guarded(run) -> int | bool:
    """``run()``; a setting that is not set is the user's to fix: one line, exit code 2."""
    import dagster as dg

    try:
        return run()
    except dg.DagsterInvalidConfigError as exc:
        name = _missing_setting(exc)
        if name is None:
            raise
        print(f"error: {name} is not set; nothing was run (see .env.example for every setting)", file=sys.stderr)
        return 2


def _print_results(started: float, what: str) -> None:
    paths = config.DataPaths.from_env()
    print(f"{what} finished in {time.monotonic() - started:.1f} s")
    print(f"warehouse: {paths.warehouse}")
    print(f"analyst snapshot: {paths.snapshot}")
    print(f"report: {paths.reports / 'latest' / 'index.html'}")


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ok = _guarded(run_nightly)
    if ok is not True:
        return ok or 1
    _print_results(started, "nightly run")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ok = _guarded(run_rebuild)
    if ok is not True:
        return ok or 1
    _print_results(started, "rebuild (no API call)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines import warehouse as wh
    from pipelines.report.data import has_table
    from pipelines.report.files import last_pdf_status, write_report

    paths = config.DataPaths.from_env()
    first = "run `incident-metrics run` (or `backfill`, or `rebuild`) first"
    if not paths.warehouse.exists():
        print(f"error: no warehouse at {paths.warehouse}: {first}", file=sys.stderr)
        return 1
    con = wh.connect(paths.warehouse, read_only=True)  # reads the marts only: no sync, no writes
    try:
        if not has_table(con, "marts", "fct_incidents"):  # a first run that failed early
            print(f"error: the warehouse at {paths.warehouse} has no marts yet: {first}", file=sys.stderr)
            return 1
        out = write_report(con, paths.reports)
    finally:
        con.close()
    print(f"report: {out / 'index.html'}")
    pdf = out / "report.pdf"
    print(f"pdf:    {pdf}" if pdf.exists() else f"pdf:    {last_pdf_status(out)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from emulator import cli as emulator_cli
    from emulator.generator import generate_organisation
    from emulator.server import EmulatorServer

    data_dir = Path(config.env(config.ENV_DATA_DIR, config.DEFAULT_DATA_DIR)).resolve()
    demo_dir = data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # The organisation's history ends on the day of the first demo run, remembered in the data
    # directory: a later `make demo` replays the same organisation (a second night) instead of
    # mixing in a different one under the same ids.
    end_file = demo_dir / "organisation-end-date.txt"
    seed_of = demo_dir / "organisation-seed.txt"
    identity = emulator_cli.demo_identity(args)  # the seed, and any other choice that makes another organisation
    if end_file.exists() and seed_of.exists() and seed_of.read_text().strip() == identity:
        end = date.fromisoformat(end_file.read_text().strip())
    else:
        end = datetime.now(timezone.utc).date()
        # A new organisation: the demo's old warehouse holds another one, so start from scratch.
        paths = config.DataPaths(data_dir)
        for stale in (paths.warehouse, paths.warehouse.with_suffix(".duckdb.wal"), paths.snapshot):
            if stale.exists():
                print(f"removing {stale} (it holds a different demo organisation)", flush=True)
                stale.unlink()
        end_file.write_text(end.isoformat() + "\n")
        seed_of.write_text(f"{identity}\n")
    print(f"generating the synthetic organisation (seed {args.seed}, history to {end}) ...", flush=True)
    org = generate_organisation(args.seed, emulator_cli.demo_config(args, end))
    ownership_path = demo_dir / "ownership.yaml"
    ownership_path.write_text(org.ownership_yaml(), encoding="utf-8")
    (demo_dir / "ground_truth.json").write_text(json.dumps(org.ground_truth, indent=2, default=str), encoding="utf-8")
    with EmulatorServer(org, port=0) as srv:  # accepting the emulator's demo tokens
        srv.start()
        print(f"emulator serving {len(org.incidents)} incidents and {len(org.deployments)} deployments at {srv.base_url}",
              flush=True)
        os.environ.update({
            **srv.client_env(),  # each connector's URL and token variables
            config.ENV_OWNERSHIP: str(ownership_path),
            config.ENV_DATA_DIR: str(data_dir),
        })
        print("running the nightly job ...", flush=True)
        ok = run_nightly()
        requests_made = srv.stats()["requests"]
    if not ok:
        print("demo failed", file=sys.stderr)
        return 1
    paths = config.DataPaths(data_dir)
    print()
    print(f"done in {time.monotonic() - started:.0f} s" + (f", {requests_made} API requests" if requests_made else ""))
    print(f"warehouse:        {paths.warehouse}")
    print(f"analyst snapshot: {paths.snapshot}")
    print(f"report:           {paths.reports / 'latest' / 'index.html'}")
    print(f"ownership file:   {ownership_path}")
    print(f"ground truth:     {demo_dir / 'ground_truth.json'}")
    print()
    _print_baselines(paths.snapshot)
    return 0


def _print_baselines(snapshot: Path) -> None:
    import duckdb

    from pipelines.report.render import fmt_duration

    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        rows = con.execute(
            "select b.team_key, coalesce(cast(t.adopted_on as varchar), 'not yet'), b.n_incidents, "
            "b.median_seconds_to_resolve, b.p90_seconds_to_resolve, b.median_seconds_to_acknowledge "
            "from marts.team_baselines b join marts.dim_teams t using (team_key) order by b.team_key"
        ).fetchall()
        try:
            verdicts = dict(con.execute(
                "select verdict, count(*) from marts.team_comparisons "
                "where metric = 'time_to_resolve' and variant = 'transition_excluded' group by verdict"
            ).fetchall())
            org = con.execute(
                "select estimate, ci_low, ci_high, verdict from marts.org_effects where metric = 'time_to_resolve'"
            ).fetchone()
        except duckdb.BinderException:  # no incidents at all: the statistics tables hold only a note
            verdicts, org = {}, None
    finally:
        con.close()
    header = f"{'team':<16} {'adopted':<10} {'n (90 d)':>8} {'median TTR':>11} {'p90 TTR':>13} {'median TTA':>11}"
    print("Team baselines (90 days before adoption; last 90 days for teams that have not adopted)")
    print(header)
    print("-" * len(header))
    for team, adopted, n, med, p90, tta in rows:
        p90_text = fmt_duration(p90) if p90 is not None else "too few (<20)"
        print(f"{team:<16} {adopted:<10} {n:>8} {fmt_duration(med):>11} {p90_text:>13} {fmt_duration(tta):>11}")
    if verdicts:
        cannot_tell = verdicts.get("inconclusive", 0) + verdicts.get("insufficient_data", 0)
        print()
        print(f"Time to resolve, six months before vs after adoption: {verdicts.get('improved', 0)} teams improved, "
              f"{verdicts.get('worsened', 0)} worsened, {verdicts.get('equivalent', 0)} no meaningful change, "
              f"{cannot_tell} cannot tell yet.")
    if org and org[0] is not None and org[1] is not None:
        words = {"improved": "improved", "worsened": "worsened", "equivalent": "no meaningful change"}
        print(f"Organisation-wide: x{org[0]:.2f} (95 % CI x{org[1]:.2f} to x{org[2]:.2f}): "
              f"{words.get(org[3], 'cannot tell yet')}. The report explains why.")


def cmd_emulator(args: argparse.Namespace) -> int:
    from emulator import cli as emulator_cli

    return emulator_cli.run(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from pipelines import compare

    return compare.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="incident-metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole nightly job against the bundled emulator")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic organisation (default 7)")
    try:
        from emulator import cli as emulator_cli

        emulator_cli.add_demo_arguments(demo)  # how the synthetic organisation is spread over the hosts
    except ImportError:  # pragma: no cover - an install without the emulator
        pass
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run the nightly job in-process (configuration from the environment)")
    run.set_defaults(func=cmd_run)

    backfill = sub.add_parser("backfill", help="re-read a historical range (bookmarks unchanged), then rebuild")
    backfill.add_argument("--since", required=True, help="start, YYYY-MM-DD (UTC, inclusive)")
    backfill.add_argument("--until", default=None, help="end, YYYY-MM-DD (UTC, exclusive); default now")
    backfill.add_argument("--window-days", type=int, default=7, help="days per window / progress line (default 7)")
    backfill.set_defaults(func=cmd_backfill)

    rebuild = sub.add_parser("rebuild", help="rebuild staging, marts, report and snapshot from raw, no API call "
                                             "(after an ownership file change, say)")
    rebuild.set_defaults(func=cmd_rebuild)

    report = sub.add_parser("report", help="re-render the report from the warehouse without syncing")
    report.set_defaults(func=cmd_report)

    emulator = sub.add_parser("emulator", help="serve the synthetic organisation's APIs (emulator/)")
    try:
        from emulator import cli as emulator_cli

        emulator_cli.add_arguments(emulator)
    except ImportError:  # pragma: no cover - an install without the emulator (e.g. the Docker image's)
        pass
    emulator.set_defaults(func=cmd_emulator)

    compare = sub.add_parser("compare", help="before/after statistics on any incident table")
    try:
        from pipelines import compare as compare_mod

        compare_mod.add_arguments(compare)
    except ImportError:  # pragma: no cover
        pass
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
