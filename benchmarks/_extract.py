"""The same PagerDuty extraction three ways, in its own process (benchmark helper).

    python benchmarks/_extract.py ours|official CONFIG.json OUT.json
    /tmp/tapvenv/bin/python benchmarks/_extract.py tap CONFIG.json OUT.json

- ``ours``: this project's PagerDutyClient, incidents plus the account-wide log-entry feed;
- ``official``: the official ``pagerduty`` client (RestApiV2Client over https): a sequential
  ``iter_all`` over /incidents, then one /incidents/{id}/log_entries listing per incident;
- ``tap``: tap-pagerduty 0.3.0's incidents stream with its BASE_URL pointed at the emulator.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM; ``ru_maxrss`` would include the parent's at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def ours(cfg: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    from pipelines.connectors.pagerduty.client import PagerDutyClient

    since, until = datetime.fromisoformat(cfg["since"]), datetime.fromisoformat(cfg["until"])
    with PagerDutyClient(cfg["pd_url"], cfg["pd_token"], rate_per_minute=900) as pd:
        incidents = list(pd.incidents(since, until))
        entries = list(pd.log_entries(since, until))
        requests = sum(s.requests for s in pd.stats.values())
    return {"incidents": len(incidents), "log_entries": len(entries), "requests": requests}


def official(cfg: dict) -> dict:
    import ssl

    import pagerduty

    client = pagerduty.RestApiV2Client(cfg["pd_token"], base_url=cfg["pd_tls_url"],
                                       verify=ssl.create_default_context(cafile=cfg["ca_file"]))
    params = {"since": cfg["since"], "until": cfg["until"], "time_zone": "UTC"}
    incidents = list(client.iter_all("/incidents", params=params))
    entries = 0
    for inc in incidents:
        entries += sum(1 for _ in client.iter_all(f"/incidents/{inc['id']}/log_entries", params={"time_zone": "UTC"}))
    return {"incidents": len(incidents), "log_entries": entries, "requests": None}


def tap(cfg: dict) -> dict:
    import io

    from tap_pagerduty import streams

    streams.PagerdutyStream.BASE_URL = cfg["pd_url"]
    config = {"token": cfg["pd_token"], "email": "bench@example.invalid",
              "start_date": cfg["since"].replace("+00:00", "Z"),
              "streams": {"incidents": {"until": cfg["until"].replace("+00:00", "Z")}}}
    counted = {"RECORD": 0}
    real_stdout = sys.stdout

    class Counter(io.TextIOBase):
        def write(self, s):
            counted["RECORD"] += s.count('"type": "RECORD"') + s.count('"type":"RECORD"')
            return len(s)

    sys.stdout = Counter()
    try:
        streams.IncidentsStream(config, {}).sync()
    finally:
        sys.stdout = real_stdout
    return {"incidents": counted["RECORD"], "log_entries": None, "requests": None}


def main() -> int:
    mode, cfg_path, out_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    cfg = json.loads(cfg_path.read_text())
    started = time.perf_counter()
    error = None
    try:
        got = {"ours": ours, "official": official, "tap": tap}[mode](cfg)
    except Exception as exc:  # noqa: BLE001 - reported in the results table
        got = {}
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    out = {"mode": mode, "wall_seconds": time.perf_counter() - started, "error": error,
           "maxrss_mb": peak_rss_mb(), **got}
    out_path.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
