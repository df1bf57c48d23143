"""The `incident-metrics compare` command: exact output on a small CSV and every bad-input message."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pipelines import compare as C

COLUMNS = ["team", "metric", "estimate", "ci_low", "ci_high", "p_value", "mde", "n_before", "n_after",
           "verdict", "low_power"]


def _args(**kw):
    parser = argparse.ArgumentParser()
    C.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return parser.parse_args(argv)


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


A_ALPHA = pd.Timestamp("2024-01-01", tz="UTC")
A_BETA = pd.Timestamp("2024-02-15", tz="UTC")
Z = sps.norm.ppf((np.arange(20) + 0.5) / 20)


def _small_dataset(tmp_path, with_ack=False):
    rows = []

    def add(team, created, seconds, ack=None):
        r = {"team": team, "incident_id": f"{team}-{len(rows)}", "created_at": _iso(created),
             "resolved_at": _iso(created + pd.Timedelta(seconds=int(seconds)))}
        if with_ack:
            r["acknowledged_at"] = _iso(created + pd.Timedelta(seconds=int(ack)))
        rows.append(r)

    # alpha: 20 incidents in each arm, after durations half the before ones
    for i in range(20):
        add("alpha", A_ALPHA - pd.Timedelta(days=200 - 8 * i), round(3600 * math.exp(0.8 * Z[i])), 120 + i)
        add("alpha", A_ALPHA + pd.Timedelta(days=40 + 8 * i), round(1800 * math.exp(0.8 * Z[i])), 60 + i)
    # incidents inside the transition window are excluded from the team rows
    add("alpha", A_ALPHA - pd.Timedelta(days=10), 99999, 30)
    add("alpha", A_ALPHA + pd.Timedelta(days=10), 1, 30)
    # beta: 5 per arm -> insufficient data
    for i in range(5):
        add("beta", A_BETA - pd.Timedelta(days=100 + 10 * i), 600 * (i + 1), 100)
        add("beta", A_BETA + pd.Timedelta(days=60 + 10 * i), 300 * (i + 1), 100)
    # gamma never adopted: control team through the whole period
    for i in range(40):
        add("gamma", pd.Timestamp("2023-05-01", tz="UTC") + pd.Timedelta(days=12 * i), 2400 + 60 * i, 90)
    inc = pd.DataFrame(rows)
    inc_path = tmp_path / "incidents.csv"
    inc.to_csv(inc_path, index=False)
    ad_path = tmp_path / "adoptions.csv"
    ad_path.write_text("team,adopted_on\nalpha,2024-01-01\nbeta,2024-02-15\n")
    return inc, inc_path, ad_path


def test_compare_small_csv_exact_rows(tmp_path):
    inc, inc_path, ad_path = _small_dataset(tmp_path)
    out = tmp_path / "out.csv"
    assert C.run(_args(incidents=inc_path, adoptions=ad_path, out=out)) == 0
    res = pd.read_csv(out, keep_default_na=False, dtype={"low_power": str})
    assert list(res.columns) == COLUMNS
    assert list(zip(res.team, res.metric)) == [
        ("alpha", "time_to_resolve"), ("alpha", "incident_rate"),
        ("beta", "time_to_resolve"), ("beta", "incident_rate"),
        ("__org__", "time_to_resolve"), ("__org__", "incident_rate")]
    alpha = res.iloc[0]
    # by formula from the file: Welch t on logs of the arms (transition incidents left out)
    a = inc[inc.team == "alpha"]
    dur = (pd.to_datetime(a.resolved_at) - pd.to_datetime(a.created_at)).dt.total_seconds().to_numpy()
    rel = (pd.to_datetime(a.created_at) - A_ALPHA).dt.days.to_numpy()
    lb, la = np.log(dur[(rel < -30) & (rel >= -210)]), np.log(dur[(rel >= 30) & (rel < 210)])
    assert len(lb) == 20 and len(la) == 20
    d = la.mean() - lb.mean()
    se = math.sqrt(la.var(ddof=1) / 20 + lb.var(ddof=1) / 20)
    t = sps.t.ppf(0.975, 38.0)  # equal variances and n -> Welch df = 38
    assert alpha.estimate == pytest.approx(math.exp(d), rel=1e-5)
    assert alpha.estimate == pytest.approx(0.5, rel=1e-3)
    assert alpha.ci_low == pytest.approx(math.exp(d - t * se), rel=1e-4)
    assert alpha.ci_high == pytest.approx(math.exp(d + t * se), rel=1e-4)
    assert (alpha.n_before, alpha.n_after, alpha.verdict, alpha.low_power) == (20, 20, "improved", "true")
    sp = math.sqrt((lb.var(ddof=1) + la.var(ddof=1)) / 2)
    assert alpha.mde == pytest.approx(1 - math.exp(-(1.959964 + 0.841621) * sp * math.sqrt(0.1)), rel=1e-4)
    rate = res.iloc[1]
    # 20 events in 180 days on each side: RR 1, exact conditional CI from Clopper-Pearson of 20/40
    ci = sps.binomtest(20, 40, 0.5).proportion_ci(method="exact")
    assert rate.estimate == pytest.approx(1.0)
    assert rate.ci_low == pytest.approx(ci.low / (1 - ci.low), rel=1e-5)
    assert rate.ci_high == pytest.approx(ci.high / (1 - ci.high), rel=1e-5)
    assert rate.p_value == pytest.approx(1.0) and rate.verdict == "inconclusive"
    assert list(res.verdict[2:4]) == ["insufficient_data", "insufficient_data"]
    assert list(res.n_before[2:4]) == [5, 5]
    org = res[res.team == "__org__"]
    assert set(org.verdict) <= {"insufficient_data", "improved", "worsened", "equivalent", "inconclusive"}
    assert set(res.low_power) <= {"true", "false"}


def test_compare_adds_time_to_acknowledge_when_present_and_prints_table(tmp_path, capsys):
    _, inc_path, ad_path = _small_dataset(tmp_path, with_ack=True)
    assert C.run(_args(incidents=inc_path, adoptions=ad_path)) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split()
    assert header == COLUMNS
    assert "time_to_acknowledge" in text and text.count("__org__") == 3


def test_compare_parquet_in_and_out(tmp_path):
    inc, _, ad_path = _small_dataset(tmp_path)
    pq = tmp_path / "inc.parquet"
    df = inc.copy()
    for c in ("created_at", "resolved_at"):
        df[c] = pd.to_datetime(df[c]).dt.tz_localize(None)  # naive timestamps are UTC
    df.loc[0, "resolved_at"] = pd.NaT  # an open incident
    df.to_parquet(pq)
    out = tmp_path / "out.parquet"
    assert C.run(_args(incidents=pq, adoptions=ad_path, out=out)) == 0
    res = pd.read_parquet(out)
    assert list(res.columns) == COLUMNS
    assert res.low_power.dtype == bool and res.n_before.dtype == "int64"


def test_compare_window_options_and_as_of(tmp_path):
    _, inc_path, ad_path = _small_dataset(tmp_path)
    out = tmp_path / "o.csv"
    # as of 2024-03-31 (end of day): alpha's after window holds days 40..90 only
    assert C.run(_args(incidents=inc_path, adoptions=ad_path, out=out, as_of="2024-03-31")) == 0
    alpha = pd.read_csv(out).iloc[0]
    expected = sum(1 for i in range(20) if 40 + 8 * i < 91)
    assert alpha.n_after == expected
    assert C.run(_args(incidents=inc_path, adoptions=ad_path, out=out, transition_days=0, before_days=30,
                       after_days=30)) == 0
    alpha = pd.read_csv(out).iloc[0]
    assert (alpha.n_before, alpha.n_after) == (1, 1)  # [-30, 0) holds day -10 only; [0, 30) day +10 only
    assert C.parse_as_of("2024-03-31") == pd.Timestamp("2024-04-01", tz="UTC")
    assert C.parse_as_of("2024-03-31T12:00:00") == pd.Timestamp("2024-03-31 12:00", tz="UTC")


# ---------------------------------------------------------------------------------------------
# bad input: each message names the file, the row (header = row 1) and the column
# ---------------------------------------------------------------------------------------------

GOOD_HEAD = "team,incident_id,created_at,resolved_at\n"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("body,row,column,fragment", [
    ("a,1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z\n"
     "a,2,2024-01-02T00:00:00Z,2024-01-02T01:00:00Z\n"
     "a,3,yesterday,2024-01-03T01:00:00Z\n", 4, "created_at", "cannot parse 'yesterday'"),
    ("a,1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z\n"
     "a,2,2024-01-02T05:00:00Z,2024-01-02T01:00:00Z\n", 3, "resolved_at", "resolved before created"),
    ("a,1,2024-01-01T00:00:00Z,\n"
     "a,2,,2024-01-02T01:00:00Z\n", 3, "created_at", "empty value"),
    ("a,1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z\n"
     "a,1,2024-01-02T00:00:00Z,2024-01-02T01:00:00Z\n", 3, "incident_id", "duplicate id '1' (first seen in row 2)"),
    ("a,1,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z\n"
     ",2,2024-01-02T00:00:00Z,2024-01-02T01:00:00Z\n", 3, "team", "empty value"),
    ("a,1,2024-01-01T00:00:00Z,2024-13-01T01:00:00Z\n", 2, "resolved_at", "cannot parse '2024-13-01T01:00:00Z'"),
])
def test_bad_incident_rows_name_file_row_and_column(tmp_path, body, row, column, fragment):
    p = _write(tmp_path, "inc.csv", GOOD_HEAD + body)
    with pytest.raises(C.CompareInputError) as err:
        C.load_incidents(p)
    msg = str(err.value)
    assert str(p) in msg and f"row {row}," in msg and f"column '{column}'" in msg and fragment in msg


def test_missing_column_names_the_column(tmp_path):
    p = _write(tmp_path, "inc.csv", "team,incident_id,created_at\na,1,2024-01-01T00:00:00Z\n")
    with pytest.raises(C.CompareInputError, match=r"row 1 \(header\): missing required column 'resolved_at'"):
        C.load_incidents(p)


def test_acknowledged_before_created(tmp_path):
    p = _write(tmp_path, "inc.csv", "team,incident_id,created_at,resolved_at,acknowledged_at\n"
                                    "a,1,2024-01-01T10:00:00Z,2024-01-01T11:00:00Z,2024-01-01T09:00:00Z\n")
    with pytest.raises(C.CompareInputError, match=r"row 2, column 'acknowledged_at': acknowledged before created"):
        C.load_incidents(p)


@pytest.mark.parametrize("text,fragment", [
    ("team,adopted_on\nalpha,2024-01-01\nbeta,someday\n", "row 3, column 'adopted_on': cannot parse 'someday'"),
    ("team,adopted_on\nalpha,2024-01-01\nalpha,2024-02-01\n", "row 3, column 'team': team 'alpha' appears twice"),
    ("team,adopted_on\nalpha,\n", "row 2, column 'adopted_on': empty value"),
    ("team,date\nalpha,2024-01-01\n", "row 1 (header): missing required column 'adopted_on'"),
])
def test_bad_adoptions(tmp_path, text, fragment):
    p = _write(tmp_path, "ad.csv", text)
    with pytest.raises(C.CompareInputError) as err:
        C.load_adoptions(p)
    assert str(p) in str(err.value) and fragment in str(err.value)


def test_run_exit_code_2_with_message_on_stderr(tmp_path, capsys):
    inc = _write(tmp_path, "inc.csv", GOOD_HEAD + "a,1,2024-01-01T00:00:00Z,2023-12-31T00:00:00Z\n")
    ad = _write(tmp_path, "ad.csv", "team,adopted_on\na,2024-01-01\n")
    assert C.run(_args(incidents=inc, adoptions=ad)) == 2
    err = capsys.readouterr().err
    assert "row 2, column 'resolved_at': resolved before created" in err
    good = _write(tmp_path, "good.csv", GOOD_HEAD + "a,1,2024-01-01T00:00:00Z,2024-01-01T02:00:00Z\n")
    assert C.run(_args(incidents=good, adoptions=ad, out=tmp_path / "x.xlsx")) == 2
    assert "unsupported extension" in capsys.readouterr().err
    assert C.run(_args(incidents=tmp_path / "missing.csv", adoptions=ad)) == 2
    assert "file not found" in capsys.readouterr().err
    assert C.run(_args(incidents=good, adoptions=ad, as_of="not a date")) == 2
    assert "--as-of" in capsys.readouterr().err
