"""``incident-metrics compare``: the before/after statistics on any incident table.

    incident-metrics compare --incidents FILE --adoptions FILE [--out FILE] [--before-days N]
        [--after-days N] [--transition-days N] [--as-of DATE]

Inputs (CSV or Parquet, chosen by the file extension):

* incidents: ``team``, ``incident_id``, ``created_at``, ``resolved_at`` (empty while still open);
  optional ``acknowledged_at`` and ``urgency`` (carried, not used: filter the file first if you want
  one urgency only). Times are ISO 8601; a time without a zone is taken as UTC.
* adoptions: ``team``, ``adopted_on`` (a date). Teams that never adopted are simply absent; their
  incidents are controls for the organisation-wide estimate.

Metrics and the columns they come from:

* ``time_to_resolve`` = resolved_at - created_at (open incidents are censored at the as-of instant);
* ``time_to_acknowledge`` = acknowledged_at - created_at (only when the column exists; incidents
  never acknowledged are left out of this metric);
* ``incident_rate`` = incidents created per 30 days in each window (count of rows).

Output: one row per adopted team and metric, then one ``__org__`` row per metric, with exactly the
columns of ``OUTPUT_COLUMNS``; CSV or Parquet by the ``--out`` extension, a table on stdout otherwise.
Team rows use the transition-excluded windows; exit code 0 on success, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import stats

OUTPUT_COLUMNS = ["team", "metric", "estimate", "ci_low", "ci_high", "p_value", "mde", "n_before", "n_after",
                  "verdict", "low_power"]
ORG_TEAM = "__org__"
INCIDENT_REQUIRED = ("team", "incident_id", "created_at", "resolved_at")
ADOPTION_REQUIRED = ("team", "adopted_on")
TIME_HINT = "expected an ISO 8601 date-time such as 2024-03-01T12:00:00Z"


class CompareInputError(ValueError):
    """Bad input file: the message names the file, the row (header = row 1) and the column."""


# ---------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------

def _read_table(path) -> tuple[pd.DataFrame, bool]:
    """(frame, is_csv). CSV cells are read as raw strings so empty cells stay empty strings."""
    p = Path(path)
    name = p.name.lower()
    if not p.exists():
        raise CompareInputError(f"{path}: file not found")
    try:
        if name.endswith((".csv", ".csv.gz", ".txt")):
            df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
            is_csv = True
        elif name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
            is_csv = False
        else:
            raise CompareInputError(f"{path}: unsupported file type (use .csv or .parquet)")
    except CompareInputError:
        raise
    except Exception as exc:  # parser errors from pandas / pyarrow
        raise CompareInputError(f"{path}: cannot read the file: {exc}") from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df.reset_index(drop=True), is_csv


def _row(i: int) -> int:
    """Spreadsheet row number of 0-based data row i (the header is row 1)."""
    return int(i) + 2


def _require_columns(df: pd.DataFrame, required, path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CompareInputError(
            f"{path}: row 1 (header): missing required column '{missing[0]}'"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f"; found columns: {', '.join(df.columns) or '(none)'}")


def _blank(series: pd.Series) -> np.ndarray:
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        return series.isna().to_numpy() | (series.astype(str).str.strip() == "").to_numpy()
    return series.isna().to_numpy()


def _parse_times(series: pd.Series, path, column: str, *, required: bool) -> pd.Series:
    """Parse a column to tz-aware UTC; naive times are UTC. Raises on the first bad row."""
    blank = _blank(series)
    if required and blank.any():
        i = int(np.argmax(blank))
        raise CompareInputError(f"{path}: row {_row(i)}, column '{column}': empty value ({TIME_HINT})")
    if pd.api.types.is_datetime64_any_dtype(series):
        s = series
        if getattr(s.dt, "tz", None) is None:
            s = s.dt.tz_localize("UTC")
        return s.dt.tz_convert("UTC")
    text = series.astype(str).str.strip().where(~blank, None)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy() & ~blank
    if bad.any():
        i = int(np.argmax(bad))
        more = int(bad.sum()) - 1
        raise CompareInputError(
            f"{path}: row {_row(i)}, column '{column}': cannot parse {series.iloc[i]!r} ({TIME_HINT})"
            + (f"; {more} more row(s) have the same problem" if more else ""))
    return parsed


def _text_column(df: pd.DataFrame, column: str, path) -> pd.Series:
    s = df[column]
    blank = _blank(s)
    if blank.any():
        i = int(np.argmax(blank))
        raise CompareInputError(f"{path}: row {_row(i)}, column '{column}': empty value")
    return s.astype(str).str.strip()


def load_incidents(path) -> pd.DataFrame:
    """Read and validate an incident table (CSV or Parquet).

    Returns columns team, incident_id, created_at, resolved_at (NaT when open), and
    acknowledged_at / urgency when present. Raises ``CompareInputError`` for a missing column, an
    empty team / incident id / created_at, an unparsable time, a duplicate incident id, or an
    incident resolved (or acknowledged) before it was created.
    """
    df, _ = _read_table(path)
    _require_columns(df, INCIDENT_REQUIRED, path)
    out = pd.DataFrame({"team": _text_column(df, "team", path),
                        "incident_id": _text_column(df, "incident_id", path)})
    dup = out["incident_id"].duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.argmax((out["incident_id"] == out["incident_id"].iloc[i]).to_numpy()))
        raise CompareInputError(f"{path}: row {_row(i)}, column 'incident_id': duplicate id "
                                f"{out['incident_id'].iloc[i]!r} (first seen in row {_row(first)})")
    out["created_at"] = _parse_times(df["created_at"], path, "created_at", required=True)
    out["resolved_at"] = _parse_times(df["resolved_at"], path, "resolved_at", required=False)
    early = (out["resolved_at"] < out["created_at"]).fillna(False).to_numpy(dtype=bool)
    if early.any():
        i = int(np.argmax(early))
        raise CompareInputError(f"{path}: row {_row(i)}, column 'resolved_at': resolved before created "
                                f"({df['resolved_at'].iloc[i]} < {df['created_at'].iloc[i]})")
    if "acknowledged_at" in df.columns:
        out["acknowledged_at"] = _parse_times(df["acknowledged_at"], path, "acknowledged_at", required=False)
        early = (out["acknowledged_at"] < out["created_at"]).fillna(False).to_numpy(dtype=bool)
        if early.any():
            i = int(np.argmax(early))
            raise CompareInputError(f"{path}: row {_row(i)}, column 'acknowledged_at': acknowledged before "
                                    f"created ({df['acknowledged_at'].iloc[i]} < {df['created_at'].iloc[i]})")
    if "urgency" in df.columns:
        out["urgency"] = df["urgency"].astype(str)
    return out


def load_adoptions(path) -> pd.DataFrame:
    """Read and validate the adoption table: columns team, adopted_on (a date; one row per team)."""
    df, _ = _read_table(path)
    _require_columns(df, ADOPTION_REQUIRED, path)
    team = _text_column(df, "team", path)
    dup = team.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.argmax((team == team.iloc[i]).to_numpy()))
        raise CompareInputError(f"{path}: row {_row(i)}, column 'team': team {team.iloc[i]!r} appears twice "
                                f"(first in row {_row(first)}); give one adoption date per team")
    raw = df["adopted_on"]
    blank = _blank(raw)
    if blank.any():
        i = int(np.argmax(blank))
        raise CompareInputError(f"{path}: row {_row(i)}, column 'adopted_on': empty value (teams that never "
                                "adopted should be left out of the adoptions file)")
    if pd.api.types.is_datetime64_any_dtype(raw):
        dates = raw.dt.date
    else:
        parsed = pd.to_datetime(raw.astype(str).str.strip(), errors="coerce", format="ISO8601")
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise CompareInputError(f"{path}: row {_row(i)}, column 'adopted_on': cannot parse {raw.iloc[i]!r} "
                                    "(expected a date such as 2024-03-01)")
        dates = parsed.dt.date
    return pd.DataFrame({"team": team.to_numpy(), "adopted_on": list(dates)})


def parse_as_of(text: str | None) -> pd.Timestamp | None:
    """``--as-of``: a date means the end of that day (UTC); a date-time is taken literally (UTC if naive)."""
    if text is None:
        return None
    s = str(text).strip()
    try:
        ts = pd.Timestamp(s)
    except (ValueError, TypeError) as exc:
        raise CompareInputError(f"--as-of: cannot parse {text!r} (expected a date such as 2024-06-30 or "
                                "an ISO 8601 date-time)") from exc
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if len(s) <= 10:  # date only
        ts = ts + pd.Timedelta(days=1)
    return ts


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--incidents", required=True, metavar="FILE",
                        help="incident table, CSV or Parquet: team, incident_id, created_at, resolved_at "
                             "(empty while open), optional acknowledged_at, urgency")
    parser.add_argument("--adoptions", required=True, metavar="FILE",
                        help="adoption table, CSV or Parquet: team, adopted_on (teams that never adopted are absent)")
    parser.add_argument("--out", metavar="FILE",
                        help="write the result as .csv or .parquet (default: print a table on stdout)")
    parser.add_argument("--before-days", type=int, default=stats.DEFAULT_BEFORE_DAYS, metavar="N",
                        help="length of the baseline window before the transition window (default %(default)s)")
    parser.add_argument("--after-days", type=int, default=stats.DEFAULT_AFTER_DAYS, metavar="N",
                        help="length of the window after the transition window (default %(default)s)")
    parser.add_argument("--transition-days", type=int, default=stats.DEFAULT_TRANSITION_DAYS, metavar="N",
                        help="days excluded on each side of the adoption date (default %(default)s)")
    parser.add_argument("--as-of", metavar="DATE",
                        help="evaluate as of this date (end of day, UTC) or date-time; incidents created later "
                             "are ignored, later resolutions count as still open (default: latest time in the file)")


def compute(incidents: pd.DataFrame, adoptions: pd.DataFrame, *, before_days: int = stats.DEFAULT_BEFORE_DAYS,
            after_days: int = stats.DEFAULT_AFTER_DAYS, transition_days: int = stats.DEFAULT_TRANSITION_DAYS,
            as_of=None) -> pd.DataFrame:
    """The compare table (exactly ``OUTPUT_COLUMNS``) for validated inputs."""
    metrics = ["time_to_resolve"]
    if "acknowledged_at" in incidents.columns:
        metrics.append("time_to_acknowledge")
    metrics.append("incident_rate")
    prepared = stats.prepare_incidents(incidents, as_of)
    as_of_ts = prepared[1]
    tc = stats.team_comparisons(incidents, adoptions, before_days=before_days, after_days=after_days,
                                transition_days=transition_days, as_of=as_of_ts, metrics=metrics,
                                variants=("transition_excluded",))
    order = {m: i for i, m in enumerate(metrics)}
    if len(tc):
        tc = tc.assign(_o=tc["metric"].map(order)).sort_values(["team", "_o"], kind="mergesort")
    rows = [dict(zip(OUTPUT_COLUMNS, (r[c] for c in OUTPUT_COLUMNS))) for r in tc.to_dict("records")]
    for metric in metrics:
        if metric == "incident_rate":
            res = stats.org_rate_effect(incidents, adoptions, transition_days=transition_days, as_of=as_of_ts)
        else:
            res = stats.org_effect(incidents, adoptions, transition_days=transition_days, as_of=as_of_ts,
                                   metric=metric, event_window=None, prepared=prepared)
        rows.append({"team": ORG_TEAM, "metric": metric, "estimate": res["estimate"], "ci_low": res["ci_low"],
                     "ci_high": res["ci_high"], "p_value": res["p_value"], "mde": res["mde"],
                     "n_before": res["n_untreated_incidents"], "n_after": res["n_treated_incidents"],
                     "verdict": res["verdict"], "low_power": res["low_power"]})
    out = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    out["n_before"] = out["n_before"].astype("int64")
    out["n_after"] = out["n_after"].astype("int64")
    out["low_power"] = out["low_power"].astype(bool)
    for c in ("estimate", "ci_low", "ci_high", "p_value", "mde"):
        out[c] = out[c].astype(float)
    return out.reset_index(drop=True)


def _text_table(df: pd.DataFrame) -> pd.DataFrame:
    t = df.copy()
    t["low_power"] = np.where(t["low_power"], "true", "false")
    return t


def run(args) -> int:
    try:
        for name in ("before_days", "after_days"):
            if getattr(args, name) <= 0:
                raise CompareInputError(f"--{name.replace('_', '-')} must be a positive number of days")
        if args.transition_days < 0:
            raise CompareInputError("--transition-days must be 0 or more")
        out_path = getattr(args, "out", None)
        if out_path and not str(out_path).lower().endswith((".csv", ".parquet", ".pq")):
            raise CompareInputError(f"--out {out_path}: unsupported extension (use .csv or .parquet)")
        as_of = parse_as_of(getattr(args, "as_of", None))
        incidents = load_incidents(args.incidents)
        adoptions = load_adoptions(args.adoptions)
        if not len(incidents):
            raise CompareInputError(f"{args.incidents}: no incident rows")
        result = compute(incidents, adoptions, before_days=args.before_days, after_days=args.after_days,
                         transition_days=args.transition_days, as_of=as_of)
    except CompareInputError as exc:
        print(f"incident-metrics compare: error: {exc}", file=sys.stderr)
        return 2
    if out_path:
        if str(out_path).lower().endswith(".csv"):
            _text_table(result).to_csv(out_path, index=False, float_format="%.6g")
        else:
            result.to_parquet(out_path, index=False)
        print(f"wrote {len(result)} rows to {out_path}", file=sys.stderr)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(_text_table(result).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-metrics compare", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
