"""``incident-metrics emulator``: serve a seeded synthetic organisation as PagerDuty, GitHub and GitLab APIs.

The lead's CLI calls :func:`add_arguments` on its sub-parser and :func:`run` with the parsed
arguments. ``python -m emulator.cli`` runs it stand-alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import date, timedelta

from .faults import FAULT_KINDS, Faults, parse_fault
from .generator import GeneratorConfig, generate_organisation, write_ground_truth, write_ownership
from .server import EmulatorServer

DEMO_PAGERDUTY_TOKEN = "pd-demo-token"
DEMO_GITHUB_TOKEN = "gh-demo-token"
DEMO_GITLAB_TOKEN = "gl-demo-token"
ENV_PAGERDUTY_TOKEN = "EMULATOR_PAGERDUTY_TOKEN"
ENV_GITHUB_TOKEN = "EMULATOR_GITHUB_TOKEN"
ENV_GITLAB_TOKEN = "EMULATOR_GITLAB_TOKEN"


# make demo puts this share of the synthetic organisation's repos on GitLab, the rest on GitHub
DEMO_GITLAB_SHARE = 0.3


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own choices about the organisation (``incident-metrics demo``)."""
    parser.add_argument("--gitlab-share", type=float, default=DEMO_GITLAB_SHARE, metavar="SHARE",
                        help=f"share of its repos hosted on GitLab, the rest on GitHub (default {DEMO_GITLAB_SHARE})")


def demo_config(args: argparse.Namespace, end: date) -> GeneratorConfig:
    """The demo's organisation: two years, ten teams; half a production deploy per repo a week keeps
    the first load's GitHub requests well within an hour of quota."""
    share = getattr(args, "gitlab_share", DEMO_GITLAB_SHARE)
    if not 0.0 <= share <= 1.0:
        raise SystemExit("incident-metrics demo: --gitlab-share must be between 0 and 1")
    return GeneratorConfig(deploys_per_repo_week=0.5, end=end, gitlab_share=share)


def demo_identity(args: argparse.Namespace) -> str:
    """What makes another demo organisation: the seed and the GitLab share (a change starts afresh)."""
    share = getattr(args, "gitlab_share", DEMO_GITLAB_SHARE)
    return f"{args.seed}" + (f" gitlab-share {share}" if share else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = a free port)")
    g.add_argument("--tls", action="store_true", help="serve https with a throwaway CA (its path is printed)")
    g.add_argument("--pagerduty-token", default=None,
                   help=f"accepted PagerDuty token (default: ${ENV_PAGERDUTY_TOKEN}, else {DEMO_PAGERDUTY_TOKEN!r})")
    g.add_argument("--github-token", default=None,
                   help=f"accepted GitHub token (default: ${ENV_GITHUB_TOKEN}, else {DEMO_GITHUB_TOKEN!r})")
    g.add_argument("--gitlab-token", default=None,
                   help=f"accepted GitLab token (default: ${ENV_GITLAB_TOKEN}, else {DEMO_GITLAB_TOKEN!r})")
    g.add_argument("--gitlab-rate-limit", type=int, default=2000, metavar="N",
                   help="GitLab requests per minute per token (default 2000, as gitlab.com; 0 = unlimited)")
    g.add_argument("--rate-limit", type=int, default=960, metavar="N",
                   help="PagerDuty requests per minute per token (default 960; 0 = unlimited)")
    g.add_argument("--github-rate-limit", type=int, default=5000, metavar="N", help="GitHub requests per hour per token (default 5000)")
    g.add_argument("--github-exhausted-status", type=int, choices=(403, 429), default=403,
                   help="status GitHub answers once the hourly quota is spent (default 403)")
    g.add_argument("--analytics-lag-hours", type=float, default=0.0, help="hours before an incident shows in /analytics (default 0)")
    g.add_argument("--now", default=None, metavar="ISO", help="start the emulator clock here (default: the end of the history)")
    g.add_argument("--verbose", action="store_true", help="log every request to stderr")

    d = parser.add_argument_group("data")
    d.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    d.add_argument("--teams", type=int, default=10, help="number of teams (default 10)")
    d.add_argument("--months", type=int, default=24, help="months of history (default 24)")
    d.add_argument("--gitlab-share", type=float, default=0.0, metavar="SHARE",
                   help="share of the repos hosted on GitLab instead of GitHub (default 0; e.g. 0.4)")
    d.add_argument("--end", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="last day of history, exclusive (default today UTC)")
    d.add_argument("--ownership-out", default=None, metavar="PATH", help="write the organisation's ownership.yaml here")
    d.add_argument("--ground-truth-out", default=None, metavar="PATH", help="write the injected ground truth (JSON) here")

    f = parser.add_argument_group("faults (deterministic; see docs/emulator.md)")
    f.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay added to each request")
    f.add_argument("--jitter-ms", type=float, default=0.0, help="plus a uniform random delay up to this")
    f.add_argument("--latency-route", default=None, metavar="SUBSTR", help="delay only paths containing this")
    f.add_argument("--fault", action="append", default=[], metavar="KIND[:k=v,...]",
                   help="inject a fault; repeatable. KIND: " + ", ".join(sorted(FAULT_KINDS))
                   + ". Options: route=SUBSTR, start=N, count=N, probability=P, status=N, seconds=S, service=pagerduty|github|gitlab, method=GET")
    f.add_argument("--github-max-page", type=int, default=None, metavar="N", help="GitHub lists answer 422 beyond page N")
    f.add_argument("--fault-seed", type=int, default=0, help="seed of the fault rngs (default 0)")


def _faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        latency_route=args.latency_route,
        rules=[parse_fault(spec) for spec in args.fault],
        github_max_page=args.github_max_page,
        seed=args.fault_seed,
    )


def run(args: argparse.Namespace) -> int:
    """Generate, serve until SIGINT/SIGTERM; returns the exit code."""
    try:
        faults = _faults_from_args(args)
    except ValueError as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 2
    pd_token = args.pagerduty_token or os.environ.get(ENV_PAGERDUTY_TOKEN) or DEMO_PAGERDUTY_TOKEN
    gh_token = args.github_token or os.environ.get(ENV_GITHUB_TOKEN) or DEMO_GITHUB_TOKEN
    gl_token = args.gitlab_token or os.environ.get(ENV_GITLAB_TOKEN) or DEMO_GITLAB_TOKEN
    if not 0.0 <= args.gitlab_share <= 1.0:
        print("emulator: --gitlab-share must be between 0 and 1", file=sys.stderr)
        return 2
    cfg = GeneratorConfig(n_teams=args.teams, months=args.months, end=args.end, gitlab_share=args.gitlab_share)
    org = generate_organisation(args.seed, cfg)
    if args.ownership_out:
        write_ownership(org, args.ownership_out)
    if args.ground_truth_out:
        write_ground_truth(org, args.ground_truth_out)
    srv = EmulatorServer(
        org, host=args.host, port=args.port, pagerduty_token=pd_token, github_token=gh_token, gitlab_token=gl_token,
        tls=args.tls, gitlab_rate_limit_per_minute=args.gitlab_rate_limit or None,
        rate_limit_per_minute=args.rate_limit or None, github_rate_limit_per_hour=args.github_rate_limit, faults=faults,
        analytics_lag=timedelta(hours=args.analytics_lag_hours), github_exhausted_status=args.github_exhausted_status,
        verbose=args.verbose,
    )
    if args.now:
        from .http_common import UTC, parse_time

        srv.set_now(parse_time(args.now, UTC))
    try:
        srv.start()
    except OSError as e:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"PAGERDUTY_API_URL={srv.pagerduty_url}")
        print(f"GITHUB_API_URL={srv.github_url}")
        print(f"GITLAB_API_URL={srv.gitlab_url}")
        print(f"EMULATOR_STATS_URL={srv.base_url}/__emulator/stats")
        if srv.ca_file:
            print(f"EMULATOR_CA_FILE={srv.ca_file}")
            print(f"REQUESTS_CA_BUNDLE={srv.ca_file}")
        # tokens are printed only when they are the documented demo defaults
        if pd_token == DEMO_PAGERDUTY_TOKEN:
            print(f"PAGERDUTY_API_TOKEN={pd_token}")
        if gh_token == DEMO_GITHUB_TOKEN:
            print(f"GITHUB_TOKEN={gh_token}")
        if gl_token == DEMO_GITLAB_TOKEN:
            print(f"GITLAB_TOKEN={gl_token}")
        totals = org.ground_truth.get("totals", {})
        print(f"# seed {args.seed}: {totals.get('teams')} teams, {totals.get('incidents')} incidents, "
              f"{totals.get('log_entries')} log entries, {totals.get('deployments')} deployments; clock {srv.now().isoformat()}",
              flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        srv.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-metrics emulator", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
