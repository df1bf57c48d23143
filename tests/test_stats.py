"""Unit tests of every estimator in pipelines/stats/ against hand-computed or published values.

Expected values are computed here by formula (or taken from published tables), never by calling
the function under test.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pipelines import stats as S

UTC = "UTC"


# ---------------------------------------------------------------------------------------------
# primary comparison: GM ratio, Welch on logs
# ---------------------------------------------------------------------------------------------

def test_gm_ratio_and_welch_ci_match_hand_computation():
    before = np.array([600.0, 1200.0, 3600.0, 7200.0, 1800.0, 2400.0])
    after = np.array([300.0, 900.0, 2400.0, 1500.0, 600.0])
    lb, la = np.log(before), np.log(after)
    diff = la.mean() - lb.mean()
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(la) - 1) + vb ** 2 / (len(lb) - 1))
    t = sps.t.ppf(0.975, df)
    res = S.compare_arms(before, after, n_boot=0)
    assert res["estimate"] == pytest.approx(math.exp(diff), rel=1e-12)
    # GM ratio = ratio of geometric means
    assert res["estimate"] == pytest.approx(sps.gmean(after) / sps.gmean(before), rel=1e-12)
    assert res["ci_low"] == pytest.approx(math.exp(diff - t * se), rel=1e-9)
    assert res["ci_high"] == pytest.approx(math.exp(diff + t * se), rel=1e-9)
    assert res["df"] == pytest.approx(df, rel=1e-12)
    assert res["p_value"] == pytest.approx(sps.ttest_ind(la, lb, equal_var=False).pvalue, rel=1e-9)
    assert res["median_ratio"] == pytest.approx(np.median(after) / np.median(before), rel=1e-12)
    assert res["mean_ratio_not_for_comparison"] == pytest.approx(after.mean() / before.mean())
    assert res["n_before"] == 6 and res["n_after"] == 5
    assert res["verdict"] == "insufficient_data" and res["low_power"] is True


def test_durations_below_one_second_are_floored_before_logs():
    res = S.compare_arms([0.0, 10.0, 100.0], [1.0, 10.0, 100.0], n_boot=0)
    assert res["estimate"] == pytest.approx(1.0)


def test_mann_whitney_matches_scipy_and_probabilistic_index():
    rng = np.random.default_rng(1)
    for n1, n2 in [(5, 7), (12, 30), (40, 60)]:
        x, y = rng.lognormal(size=n1), rng.lognormal(size=n2) * 1.5
        u, p = S.mann_whitney(x, y)
        ref = sps.mannwhitneyu(x, y, alternative="two-sided",
                               method="exact" if min(n1, n2) <= 8 else "asymptotic")
        assert u == pytest.approx(ref.statistic)
        assert p == pytest.approx(ref.pvalue, rel=1e-9)
    x = np.round(rng.normal(size=30))  # heavy ties
    y = np.round(rng.normal(size=25) + 0.5)
    assert S.mann_whitney(x, y)[1] == pytest.approx(sps.mannwhitneyu(x, y, method="asymptotic").pvalue, rel=1e-9)
    # P(after < before) = 1 - U_after / (n_a n_b): all after values smaller -> 1
    res = S.compare_arms([100.0, 200.0, 300.0], [10.0, 20.0], n_boot=0)
    assert res["prob_after_shorter"] == 1.0


# ---------------------------------------------------------------------------------------------
# MDE, verdicts, TOST
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,sigma,table", [(50, 1.25, 0.50), (10, 1.0, 0.71), (30, 1.25, 0.60),
                                           (100, 1.5, 0.45), (250, 1.25, 0.27), (1000, 1.25, 0.14),
                                           (2000, 1.0, 0.08)])
def test_mde_closed_form_matches_stats_notes_table(n, sigma, table):
    # stats-notes 5.1 table, rounded to whole per cent
    assert round(S.mde_closed_form(n, n, sigma), 2) == table


def _two_point_sample(n, centre, spread=0.3):
    """n log-symmetric values around `centre` seconds with log SD ~ spread (deterministic)."""
    z = sps.norm.ppf((np.arange(n) + 0.5) / n)
    return centre * np.exp(spread * z)


def test_verdict_insufficient_boundary_19_vs_20():
    before = _two_point_sample(40, 3600)
    res19 = S.compare_arms(before, _two_point_sample(19, 1200), n_boot=0)
    res20 = S.compare_arms(before, _two_point_sample(20, 1200), n_boot=0)
    assert res19["verdict"] == "insufficient_data"
    assert res20["verdict"] == "improved"
    res20w = S.compare_arms(_two_point_sample(20, 1200), _two_point_sample(20, 3600), n_boot=0)
    assert res20w["verdict"] == "worsened"


def test_low_power_boundary_49_vs_50():
    before = _two_point_sample(80, 3600)
    r49 = S.compare_arms(before, _two_point_sample(49, 3000), n_boot=0)
    r50 = S.compare_arms(before, _two_point_sample(50, 3000), n_boot=0)
    assert r49["mde"] < 0.5 and r50["mde"] < 0.5
    assert r49["low_power"] is True
    assert r50["low_power"] is False


def test_low_power_when_mde_above_half_even_with_large_n():
    rng = np.random.default_rng(3)
    res = S.compare_arms(rng.lognormal(8, 4.0, 60), rng.lognormal(8, 4.0, 60), n_boot=0)
    assert res["mde"] > 0.5 and res["low_power"] is True


def test_tost_equivalence_for_identical_distributions_with_large_n():
    rng = np.random.default_rng(11)
    before = rng.lognormal(math.log(3600), 1.25, 3000)
    after = rng.lognormal(math.log(3600), 1.25, 3000)
    res = S.compare_arms(before, after, n_boot=200)
    assert res["tost_p"] < 0.05
    assert res["verdict"] == "equivalent"
    # TOST p by formula: max of the two one-sided Welch tests against log(0.75) and log(1.25)
    d = math.log(res["estimate"])
    p_lo = sps.t.sf((d - math.log(0.75)) / res["se_log"], res["df"])
    p_hi = sps.t.cdf((d - math.log(1.25)) / res["se_log"], res["df"])
    assert res["tost_p"] == pytest.approx(max(p_lo, p_hi), rel=1e-9)


def test_small_identical_samples_are_inconclusive_not_no_change():
    rng = np.random.default_rng(5)
    res = S.compare_arms(rng.lognormal(8, 1.25, 25), rng.lognormal(8, 1.25, 25), n_boot=0)
    assert res["verdict"] == "inconclusive"


def test_decide_verdict_direction_higher_is_better():
    assert S.decide_verdict(30, 30, 1.2, 1.5, 0.5, direction="higher_is_better") == "improved"
    assert S.decide_verdict(30, 30, 0.5, 0.8, 0.5, direction="higher_is_better") == "worsened"
    assert S.decide_verdict(30, 30, 0.9, 1.1, 0.01) == "equivalent"
    assert S.decide_verdict(30, 30, 0.6, 1.4, 0.3) == "inconclusive"


# ---------------------------------------------------------------------------------------------
# bootstrap of the median ratio
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [11, 12])
def test_exact_bootstrap_median_sampler_matches_naive_resampling(n):
    rng = np.random.default_rng(0)
    v = np.sort(rng.lognormal(size=n))
    fast = S.bootstrap_medians(v, 40_000, np.random.default_rng(1))
    idx = np.random.default_rng(2).integers(0, n, size=(40_000, n))
    naive = np.median(v[idx], axis=1)
    for q in (0.025, 0.25, 0.5, 0.75, 0.975):
        # compare the bootstrap CDFs at the naive quantiles (discrete distribution)
        x = np.quantile(naive, q)
        assert np.mean(fast <= x) == pytest.approx(np.mean(naive <= x), abs=0.01)


def test_median_ratio_bootstrap_is_seeded_and_brackets_estimate():
    rng = np.random.default_rng(4)
    b, a = rng.lognormal(8, 1.2, 60), rng.lognormal(7.5, 1.2, 60)
    r1 = S.compare_arms(b, a, rng=np.random.default_rng(9))
    r2 = S.compare_arms(b, a, rng=np.random.default_rng(9))
    assert r1["median_ratio_ci_low"] == r2["median_ratio_ci_low"]
    assert r1["median_ratio_ci_low"] < r1["median_ratio"] < r1["median_ratio_ci_high"]


# ---------------------------------------------------------------------------------------------
# descriptive statistics
# ---------------------------------------------------------------------------------------------

def test_median_ci_order_statistics_n10_n20():
    # published ranks of the 95 % distribution-free CI for the median: n=10 -> (2, 9), n=20 -> (6, 15)
    assert S.median_ci_ranks(10)[:2] == (2, 9)
    assert S.median_ci_ranks(20)[:2] == (6, 15)
    assert S.median_ci_ranks(10)[2] == pytest.approx(1 - 2 * 11 / 1024)  # 1 - 2 P(B <= 1)
    assert S.median_ci_ranks(5) is None
    s10 = S.summarize_durations(np.arange(1, 11) * 60.0)
    assert (s10["median_ci_low_s"], s10["median_ci_high_s"]) == (120.0, 540.0)
    assert s10["median_s"] == 330.0 and s10["p90_s"] is None and s10["median_method"] == "order_statistic"
    s20 = S.summarize_durations(np.arange(20, 0, -1) * 60.0)
    assert (s20["median_ci_low_s"], s20["median_ci_high_s"]) == (360.0, 900.0)
    assert s20["p90_s"] == pytest.approx(np.quantile(np.arange(1, 21) * 60.0, 0.9))
    s5 = S.summarize_durations([1.0, 2, 3, 4, 5])
    assert math.isnan(s5["median_ci_low_s"])


def test_geometric_mean_t_ci_by_formula():
    x = np.array([60.0, 600.0, 3600.0, 7200.0, 86400.0])
    s = S.summarize_durations(x)
    lx = np.log(x)
    half = sps.t.ppf(0.975, 4) * lx.std(ddof=1) / math.sqrt(5)
    assert s["gmean_s"] == pytest.approx(math.exp(lx.mean()))
    assert s["gmean_ci_low_s"] == pytest.approx(math.exp(lx.mean() - half))
    assert s["gmean_ci_high_s"] == pytest.approx(math.exp(lx.mean() + half))
    assert s["mean_s_not_for_comparison"] == pytest.approx(x.mean())
    assert s["share_over_4h"] == pytest.approx(1 / 5)  # only 86400 s is over 14400 s


@pytest.mark.parametrize("k,n,low,high", [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),
                                          (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombe_1998(k, n, low, high):
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score)
    p, lo, hi = S.wilson_ci(k, n)
    assert p == pytest.approx(k / n)
    assert round(lo, 4) == low and round(hi, 4) == high


@pytest.mark.parametrize("k,low,high", [(0, 0.0, 3.689), (1, 0.0253, 5.572), (10, 4.795, 18.39)])
def test_exact_poisson_ci_matches_table(k, low, high):
    lo, hi = S.poisson_ci(k)
    assert lo == pytest.approx(low, abs=6e-4) and hi == pytest.approx(high, abs=6e-4)


def test_rate_ci_is_per_30_days():
    rate, lo, hi = S.rate_ci(0, 30.0)
    assert rate == 0 and lo == 0 and hi == pytest.approx(3.689, abs=1e-3)
    rate, lo, hi = S.rate_ci(10, 60.0)
    assert rate == pytest.approx(5.0) and lo == pytest.approx(4.795 / 2, abs=1e-3)
    assert math.isnan(S.rate_ci(3, 0)[0])


def test_kaplan_meier_median_when_more_than_one_percent_censored():
    t = np.array([1.0, 2, 3, 4, 5, 6]) * 3600
    cens = np.array([False, False, True, False, True, False])
    s = S.summarize_durations(t, censored=cens)
    # hand KM: S(1h)=5/6, S(2h)=4/6, 3h censored, S(4h)=4/6*2/3=0.444 -> median 4 h
    assert s["median_method"] == "kaplan_meier" and s["median_s"] == 4 * 3600
    assert s["n_censored"] == 2 and s["gmean_is_lower_bound"] is True
    # share over 4 h: known outcomes = 4 resolved + the 5h-open one (over); the 3h-open one is unknown
    assert s["share_over_4h_n"] == 5 and s["share_over_4h"] == pytest.approx(2 / 5)
    times, surv, se = S.kaplan_meier(t, ~cens)
    assert surv == pytest.approx([5 / 6, 4 / 6, 4 / 6 * 2 / 3, 0.0])


def test_few_censored_use_order_statistics_with_open_age():
    x = np.arange(1, 201) * 60.0
    cens = np.zeros(200, dtype=bool)
    cens[-2:] = True  # 1 %: not more than 1 %
    s = S.summarize_durations(x, censored=cens)
    assert s["median_method"] == "order_statistic" and s["median_s"] == pytest.approx(np.median(x))


# ---------------------------------------------------------------------------------------------
# rates, proportions, counts
# ---------------------------------------------------------------------------------------------

def test_compare_rates_exact_conditional():
    res = S.compare_rates(10, 100.0, 30, 120.0)
    rr = (30 / 120) / (10 / 100)
    assert res["estimate"] == pytest.approx(rr)
    # conditional binomial: k_after ~ Bin(40, p0 = 120/220) under H0
    p0 = 120 / 220
    ref = sps.binomtest(30, 40, p0)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    ci = ref.proportion_ci(0.95, method="exact")
    odds = 100 / 120
    assert res["ci_low"] == pytest.approx(ci.low / (1 - ci.low) * odds, rel=1e-6)
    assert res["ci_high"] == pytest.approx(ci.high / (1 - ci.high) * odds, rel=1e-6)
    assert res["verdict"] == "worsened"  # more incidents
    assert res["rate_before"] == pytest.approx(3.0) and res["rate_after"] == pytest.approx(7.5)
    up = S.compare_rates(10, 100.0, 30, 120.0, direction="higher_is_better")
    assert up["verdict"] == "improved"  # e.g. deployment frequency


def test_compare_rates_sufficiency_uses_total_events_and_exposure():
    assert S.compare_rates(19, 180, 20, 180)["verdict"] == "insufficient_data"  # 39 < 40 events
    assert S.compare_rates(20, 180, 20, 180)["verdict"] != "insufficient_data"
    assert S.compare_rates(40, 180, 40, 20)["verdict"] == "insufficient_data"  # < 30 days after
    assert S.compare_rates(5, 180, 0, 0)["verdict"] == "insufficient_data"


def test_compare_proportions_katz_log_by_formula():
    res = S.compare_proportions(30, 100, 15, 90)
    lrr = math.log((15 / 90) / (30 / 100))
    se = math.sqrt(1 / 15 - 1 / 90 + 1 / 30 - 1 / 100)
    assert res["estimate"] == pytest.approx(math.exp(lrr))
    assert res["ci_low"] == pytest.approx(math.exp(lrr - 1.959963985 * se))
    assert res["ci_high"] == pytest.approx(math.exp(lrr + 1.959963985 * se))
    assert res["p_value"] == pytest.approx(2 * sps.norm.sf(abs(lrr) / se))
    assert res["verdict"] == "improved"


def test_compare_counts_ratio_of_means_delta_method():
    b = np.array([0, 1, 2, 3, 1, 0, 2, 4, 1, 1] * 3, dtype=float)
    a = np.array([0, 0, 1, 1, 0, 2, 1, 0, 1, 0] * 3, dtype=float)
    res = S.compare_counts(b, a)
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1) / (30 * ma ** 2), b.var(ddof=1) / (30 * mb ** 2)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 29 + vb ** 2 / 29)
    t = sps.t.ppf(0.975, df)
    assert res["estimate"] == pytest.approx(ma / mb)
    assert res["ci_low"] == pytest.approx(ma / mb * math.exp(-t * se))
    assert res["ci_high"] == pytest.approx(ma / mb * math.exp(t * se))


# ---------------------------------------------------------------------------------------------
# Benjamini-Hochberg
# ---------------------------------------------------------------------------------------------

def test_benjamini_hochberg_worked_example():
    q = S.benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    # sorted .005 .01 .03 .04 -> .02 .02 .04 .04 (p * m / rank, then running minimum from the top)
    assert q == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_benjamini_hochberg_published_example_and_nan():
    # Benjamini & Hochberg (1995), section 4: 15 p values; at q = 0.05 the first four are rejected
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
         0.5719, 0.6528, 0.7590, 1.000]
    q = S.benjamini_hochberg(p)
    assert list(q <= 0.05) == [True] * 4 + [False] * 11
    assert q == pytest.approx(sps.false_discovery_control(p))
    q2 = S.benjamini_hochberg([0.01, np.nan, 0.02])
    assert math.isnan(q2[1]) and q2[0] == pytest.approx(0.02) and q2[2] == pytest.approx(0.02)
    assert np.isnan(S.benjamini_hochberg([np.nan])).all()


# ---------------------------------------------------------------------------------------------
# team_comparisons: windows, transition exclusion, BH, columns
# ---------------------------------------------------------------------------------------------

def _inc(team, created, minutes, ack_minutes=None):
    created = pd.to_datetime(created, utc=True)
    res = created + pd.to_timedelta(minutes, unit="min")
    df = pd.DataFrame({"team": team, "incident_id": [f"{team}-{i}" for i in range(len(created))],
                       "created_at": created, "resolved_at": res})
    if ack_minutes is not None:
        df["acknowledged_at"] = created + pd.to_timedelta(ack_minutes, unit="min")
    return df


def test_transition_window_is_excluded_and_reported_both_ways():
    adopted = pd.Timestamp("2024-03-01", tz=UTC)
    offsets = [-200, -100, -35, -20, -1, 0, 5, 29, 30, 100, 209, 215]  # days from adoption
    created = [adopted + pd.Timedelta(days=d, hours=12) for d in offsets]
    inc = _inc("a", created, [60] * len(created))
    ad = pd.DataFrame({"team": ["a"], "adopted_on": [adopted.date()]})
    as_of = pd.Timestamp("2025-01-01", tz=UTC)
    tc = S.team_comparisons(inc, ad, as_of=as_of, metrics=("time_to_resolve",), data_start="2023-01-01")
    ex = tc[tc.variant == "transition_excluded"].iloc[0]
    al = tc[tc.variant == "all"].iloc[0]
    # excluded: before holds -200, -100, -35; after [A+30, A+210) holds 30, 100, 209
    assert (ex.n_before, ex.n_after) == (3, 3)
    assert ex.before_start == adopted - pd.Timedelta(days=210) and ex.before_end == adopted - pd.Timedelta(days=30)
    assert ex.after_start == adopted + pd.Timedelta(days=30) and ex.after_end == adopted + pd.Timedelta(days=210)
    # all: before [A-210, A) adds -20, -1; after [A, A+210) adds 0, 5, 29
    assert (al.n_before, al.n_after) == (5, 6)
    # transition_days=0 makes both variants identical
    tc0 = S.team_comparisons(inc, ad, as_of=as_of, metrics=("time_to_resolve",), transition_days=0)
    assert tc0.n_before.nunique() == 1 and tc0.n_after.nunique() == 1


def test_as_of_censors_open_incidents_and_clips_the_after_window():
    adopted = pd.Timestamp("2024-03-01", tz=UTC)
    created = [adopted + pd.Timedelta(days=d) for d in (-100, -50, 40, 60)]
    inc = _inc("a", created, [60, 60, 60, 60 * 24 * 30])  # the last one resolves a month later
    inc.loc[2, "resolved_at"] = pd.NaT  # still open
    ad = pd.DataFrame({"team": ["a"], "adopted_on": [adopted.date()]})
    as_of = adopted + pd.Timedelta(days=70)
    tc = S.team_comparisons(inc, ad, as_of=as_of, metrics=("time_to_resolve", "incident_rate"),
                            variants=("transition_excluded",))
    ttr = tc[tc.metric == "time_to_resolve"].iloc[0]
    assert ttr.n_after == 2 and ttr.n_censored_after == 2  # open, and resolved after as_of
    assert ttr.after_end == as_of
    rate = tc[tc.metric == "incident_rate"].iloc[0]
    assert rate.exposure_after_days == pytest.approx(40.0)


def test_team_comparisons_bh_per_metric_and_required_columns():
    rng = np.random.default_rng(0)
    frames, ad = [], []
    adopted = pd.Timestamp("2024-01-01", tz=UTC)
    for k in range(6):
        n = 120
        created = adopted + pd.to_timedelta(rng.uniform(-240, 240, n), unit="D")
        mins = rng.lognormal(4, 1.25, n) * np.where(created >= adopted, 0.6 if k < 3 else 1.0, 1.0)
        df = _inc(f"t{k}", created, mins, ack_minutes=rng.exponential(5, n))
        df["after_hours"] = rng.uniform(size=n) < 0.3
        df["handoffs"] = rng.poisson(1.0, n)
        frames.append(df)
        ad.append((f"t{k}", adopted.date()))
    inc = pd.concat(frames, ignore_index=True)
    tc = S.team_comparisons(inc, pd.DataFrame(ad, columns=["team", "adopted_on"]))
    required = ["team", "metric", "estimate", "ci_low", "ci_high", "p_value", "mde", "n_before", "n_after",
                "verdict", "low_power", "q_value", "variant", "median_ratio", "median_ratio_ci_low",
                "median_ratio_ci_high", "mannwhitney_p", "before_start", "before_end", "after_start", "after_end"]
    assert all(c in tc.columns for c in required)
    assert set(tc.metric) == set(S.DEFAULT_METRICS)
    assert len(tc) == 6 * 5 * 2
    assert set(tc.verdict) <= set(S.VERDICTS)
    for (_, _), g in tc.groupby(["metric", "variant"]):
        assert g.q_value.to_numpy() == pytest.approx(sps.false_discovery_control(g.p_value.to_numpy()))
    # deterministic: same input, same bootstrap
    tc2 = S.team_comparisons(inc, pd.DataFrame(ad, columns=["team", "adopted_on"]))
    assert tc.median_ratio_ci_low.equals(tc2.median_ratio_ci_low)


def test_deployment_frequency_is_higher_is_better():
    adopted = pd.Timestamp("2024-01-01", tz=UTC)
    inc = _inc("a", [adopted - pd.Timedelta(days=100)], [60])
    dep_days = list(np.linspace(-200, -40, 30)) + list(np.linspace(40, 200, 90))
    deps = pd.DataFrame({"team": "a", "deployed_at": [adopted + pd.Timedelta(days=float(d)) for d in dep_days]})
    tc = S.team_comparisons(inc, pd.DataFrame({"team": ["a"], "adopted_on": [adopted.date()]}),
                            as_of=adopted + pd.Timedelta(days=300), metrics=("time_to_resolve",),
                            deployments=deps, variants=("transition_excluded",),
                            data_start=adopted - pd.Timedelta(days=400))
    row = tc[tc.metric == "deployment_frequency"].iloc[0]
    assert row.n_before == 30 and row.n_after == 90
    assert row.estimate == pytest.approx(3.0) and row.verdict == "improved"


# ---------------------------------------------------------------------------------------------
# organisation-wide DiD
# ---------------------------------------------------------------------------------------------

def _panel(rng, effect=0.8, noise=0.0, n_teams=8, months=24, per_month=6):
    start = pd.Timestamp("2023-01-01", tz=UTC)
    rows, ad = [], []
    month_fx = rng.normal(0, 0.3, months + 1)
    for k in range(n_teams):
        adopt_m = 6 + k if k < n_teams - 3 else None
        team_fx = rng.normal(0, 0.5)
        for m in range(months):
            ms = start + pd.DateOffset(months=m)
            for j in range(per_month):
                c = ms + pd.Timedelta(days=1 + 4 * j, hours=k)
                treated = adopt_m is not None and m >= adopt_m
                y = math.log(3600) + team_fx + month_fx[m] + (math.log(effect) if treated else 0.0)
                y += noise * rng.standard_normal()
                rows.append((f"t{k}", f"t{k}-{m}-{j}", c, c + pd.Timedelta(seconds=round(math.exp(y), 3))))
        if adopt_m is not None:
            ad.append((f"t{k}", (start + pd.DateOffset(months=adopt_m)).date()))
    inc = pd.DataFrame(rows, columns=["team", "incident_id", "created_at", "resolved_at"])
    return inc, pd.DataFrame(ad, columns=["team", "adopted_on"])


def test_org_effect_recovers_exact_effect_without_noise():
    inc, ad = _panel(np.random.default_rng(0), effect=0.8, noise=0.0)
    res = S.org_effect(inc, ad, transition_days=0)
    assert res["estimate"] == pytest.approx(0.8, rel=1e-6)
    assert res["se_log"] == pytest.approx(0.0, abs=1e-6)
    assert res["n_treated_teams"] == 5 and res["n_never_adopted_teams"] == 3


def test_org_effect_matches_dense_imputation_by_ols():
    rng = np.random.default_rng(1)
    inc, ad = _panel(rng, effect=0.7, noise=1.0)
    T = 30
    res = S.org_effect(inc, ad, transition_days=T)
    # independent dense implementation: OLS on dummies for untreated incidents, impute treated
    c = inc.created_at
    a = inc.team.map(dict(zip(ad.team, pd.to_datetime(ad.adopted_on).dt.tz_localize(UTC))))
    y = np.log((inc.resolved_at - c).dt.total_seconds().to_numpy())
    rel = (c - a).dt.total_seconds() / 86400
    untreated = (a.isna() | (rel < -T)).to_numpy()
    treated = (rel >= T).fillna(False).to_numpy()
    month = (c.dt.year * 12 + c.dt.month).to_numpy()
    X = pd.get_dummies(pd.DataFrame({"t": inc.team, "m": month.astype(str)}), drop_first=False).to_numpy(float)
    beta = np.linalg.lstsq(X[untreated], y[untreated], rcond=None)[0]
    att = np.mean(y[treated] - X[treated] @ beta)
    assert math.log(res["estimate"]) == pytest.approx(att, abs=1e-8)
    assert res["n_treated_incidents"] == int(treated.sum())
    assert res["ci_low"] < res["estimate"] < res["ci_high"] and 0 < res["placebo_p"] <= 1
    kinds = {r["kind"] for r in res["event_study"]}
    assert kinds == {"imputed_post", "held_out_pre"}
    months = [r["event_month"] for r in res["event_study"]]
    assert min(months) >= -6 and max(months) <= 12


def test_org_effect_jackknife_se_by_formula():
    inc, ad = _panel(np.random.default_rng(2), effect=0.9, noise=0.8, n_teams=6)
    res = S.org_effect(inc, ad, transition_days=0, event_window=None, placebo_months=0)
    teams = sorted(inc.team.unique())
    loo = []
    for t in teams:
        r = S.org_effect(inc[inc.team != t], ad[ad.team != t], transition_days=0, event_window=None,
                         placebo_months=0)
        loo.append(r["log_estimate"])
    loo = np.array(loo)
    g = len(teams)
    se = math.sqrt((g - 1) / g * np.sum((loo - loo.mean()) ** 2))
    assert res["se_log"] == pytest.approx(se, rel=1e-6)
    assert res["df"] == g - 1


def test_org_rate_effect_detects_rate_change():
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2023-01-01", tz=UTC)
    rows, ad = [], []
    for k in range(10):
        adopt = start + pd.Timedelta(days=200 + 20 * k) if k < 7 else None
        n = 800
        c = start + pd.to_timedelta(rng.uniform(0, 730, n), unit="D")
        keep = np.ones(n, dtype=bool)
        if adopt is not None:  # halve the rate after adoption by thinning
            keep = ~((c >= adopt) & (rng.uniform(size=n) < 0.5))
        c = c[keep]
        rows.append(_inc(f"t{k}", c, np.full(len(c), 30.0)))
        if adopt is not None:
            ad.append((f"t{k}", adopt.date()))
    inc = pd.concat(rows, ignore_index=True)
    res = S.org_rate_effect(inc, pd.DataFrame(ad, columns=["team", "adopted_on"]))
    assert res["ci_low"] < 0.5 < res["ci_high"]
    assert res["verdict"] == "improved"


def test_period_summaries_months_and_windows():
    inc, ad = _panel(np.random.default_rng(4), n_teams=4)
    ps = S.period_summaries(inc, ad)
    assert set(ps.period_kind) == {"month", "before", "after"}
    m = ps[(ps.period_kind == "month")]
    assert m.n.sum() == len(inc)
    assert {"median_s", "median_ci_low_s", "p90_s", "gmean_s", "share_over_4h", "incident_rate_per_30d",
            "mean_s_not_for_comparison"} <= set(ps.columns)


def test_large_org_statistics_are_fast():
    rng = np.random.default_rng(5)
    n, teams = 100_000, 40
    start = pd.Timestamp("2022-01-01", tz=UTC)
    team = rng.integers(0, teams, n)
    created = start + pd.to_timedelta(rng.uniform(0, 1000, n), unit="D")
    inc = pd.DataFrame({"team": [f"t{t}" for t in team], "incident_id": np.arange(n).astype(str),
                        "created_at": created,
                        "resolved_at": created + pd.to_timedelta(rng.lognormal(8, 1.25, n), unit="s")})
    ad = pd.DataFrame({"team": [f"t{t}" for t in range(30)],
                       "adopted_on": [(start + pd.Timedelta(days=300 + 10 * t)).date() for t in range(30)]})
    t0 = time.perf_counter()
    tc = S.team_comparisons(inc, ad)
    org = S.org_effect(inc, ad)
    elapsed = time.perf_counter() - t0
    assert len(tc) == 30 * 2 * 2 and np.isfinite(org["estimate"])
    assert elapsed < 5.0


def test_kaplan_meier_median_ci_is_ordered_around_the_median():
    # 40 durations 1..40 min, every 5th still open (censored): Kaplan-Meier path
    seconds = np.arange(1, 41) * 60.0
    censored = (np.arange(40) % 5) == 4
    out = S.summarize_durations(seconds, censored=censored)
    assert out["median_method"] == "kaplan_meier"
    assert out["median_ci_low_s"] < out["median_s"] < out["median_ci_high_s"]


def test_jackknife_se_is_missing_not_zero_without_two_estimates():
    loo = np.array([[1.0, np.nan, 2.0], [3.0, np.nan, np.nan], [5.0, np.nan, np.nan]])
    se = S.org._jackknife(np.zeros(3), loo)
    # column 0: values 1, 3, 5 -> sqrt(2/3 * ((1-3)^2 + 0 + (5-3)^2)) = sqrt(16/3)
    assert se[0] == pytest.approx(np.sqrt(16 / 3))
    assert np.isnan(se[1]) and np.isnan(se[2])


# ---------------------------------------------------------------------------------------------
# fast paths: the same numbers as the library calls they replace, bit for bit
# ---------------------------------------------------------------------------------------------

def test_sorted_median_and_quantiles_are_numpys_bit_for_bit():
    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(3000):
        n = int(rng.integers(1, 40)) if trial % 3 else int(rng.integers(40, 2000))
        x = [rng.lognormal(8, 2, n), np.round(rng.exponential(3600, n)), rng.integers(1, 50, n).astype(float),
             rng.random(n) * 1e-3][trial % 4]
        xs = np.sort(x)
        assert S.descriptive._sorted_median(xs) == float(np.median(x))
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
            assert S.descriptive._sorted_quantile(xs, q) == float(np.quantile(xs, q)), (n, q)
            checked += 1
    assert checked == 24_000


def test_mean_and_std_are_numpys_bit_for_bit():
    rng = np.random.default_rng(15)
    for trial in range(2000):
        n = int(rng.integers(2, 40)) if trial % 3 else int(rng.integers(40, 5000))
        x = [rng.lognormal(8, 2, n), np.log(rng.exponential(3600, n) + 1), np.full(n, 7.25), rng.random(n)][trial % 4]
        m = S.descriptive._mean(x)
        assert m == float(x.mean())
        assert S.descriptive._std_ddof1(x, m) == float(x.std(ddof=1))


def _equal(a, b) -> bool:
    """Equal as numbers, NaN equal to NaN (and to None, as a missing p90 is None)."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and \
               (b is None or (isinstance(b, float) and math.isnan(b)))
    return a == b


def test_period_summaries_are_each_periods_own_statistics_bit_for_bit():
    """Every row of period_summaries (computed for all periods at once) holds what
    summarize_durations and the per-column statistics give that period's incidents alone: months
    with a Kaplan-Meier median (open incidents), acknowledgements and after-hours flags missing in
    places, handoffs of whole numbers and not."""
    rng = np.random.default_rng(16)
    inc, ad = _panel(rng, noise=0.6, n_teams=6, per_month=9)
    n = len(inc)
    inc["acknowledged_at"] = inc["created_at"] + pd.to_timedelta(rng.exponential(300, n).round(), unit="s")
    inc.loc[rng.random(n) < 0.2, "acknowledged_at"] = pd.NaT
    inc["after_hours"] = pd.array(rng.random(n) < 0.3, dtype="boolean")
    inc.loc[rng.random(n) < 0.1, "after_hours"] = pd.NA
    as_of = pd.Timestamp("2024-11-20", tz=UTC)
    # open at as_of: a few in every month of the last year, so some months pass the 1 % share
    late = (inc["created_at"] > pd.Timestamp("2023-12-01", tz=UTC)).to_numpy() & (rng.random(n) < 0.08)
    inc.loc[late, "resolved_at"] = pd.NaT
    fractional = rng.random(n) * 3
    fractional[rng.random(n) < 0.1] = np.nan  # unknown: left out of the mean's numerator and denominator
    for handoffs in (rng.integers(0, 4, n).astype(float), fractional):
        inc["handoffs"] = handoffs
        prep, _ = S.prepare_incidents(inc, as_of)
        out = S.period_summaries(inc, ad, as_of=as_of, prepared=(prep, as_of))
        # each period's incidents in creation order (sums depend on the order in the last bit)
        prep = prep.sort_values(["team", "created_ns"], kind="mergesort")
        assert set(out["median_method"]) == {"order_statistic", "kaplan_meier"}
        assert {"month", "before", "after"} == set(out["period_kind"])
        created = prep["created_ns"].to_numpy()
        for row in out.to_dict("records"):
            sel = ((prep["team"] == row["team"]).to_numpy()
                   & (created >= row["period_start"].value) & (created < row["period_end"].value))
            expected = S.summarize_durations(prep["ttr_s"].to_numpy()[sel], censored=prep["ttr_censored"].to_numpy()[sel])
            tta = prep["tta_s"].to_numpy()[sel]
            tta = tta[np.isfinite(tta)]
            ah = prep["after_hours"].to_numpy()[sel]
            ah = ah[np.isfinite(ah)]
            h = prep["handoffs"].to_numpy()[sel]
            share, share_lo, share_hi = S.wilson_ci(int(ah.sum()), len(ah))
            expected.update(median_tta_s=float(np.median(tta)) if len(tta) else float("nan"), n_acknowledged=len(tta),
                            after_hours_share=share, after_hours_share_ci_low=share_lo,
                            after_hours_share_ci_high=share_hi,
                            handoffs_per_incident=float(h[np.isfinite(h)].mean()))
            for key, value in expected.items():
                assert _equal(row[key], value), (row["team"], row["period_kind"], row["period_start"], key, row[key], value)


def test_period_summaries_windows_that_end_before_they_start_are_empty():
    """An after window starts a transition (30 days) after adoption: adopted 12 days before as_of,
    it ends (at as_of) before it starts, and holds nothing even with an incident created at as_of.
    A before window ends before an explicit data_start likewise."""
    as_of = pd.Timestamp("2025-03-01", tz=UTC)
    created = [as_of - pd.Timedelta(days=d) for d in (60, 40, 20, 5)] + [as_of]
    inc = pd.DataFrame({"team": "a", "incident_id": [f"i{k}" for k in range(5)], "created_at": created,
                        "resolved_at": [c + pd.Timedelta(hours=1) for c in created[:4]] + [pd.NaT],
                        "acknowledged_at": [c + pd.Timedelta(minutes=2) for c in created],
                        "after_hours": [True, False, True, False, True], "handoffs": [1.0, 0, 2, 1, 0]})
    ad = pd.DataFrame({"team": ["a"], "adopted_on": [(as_of - pd.Timedelta(days=12)).date()]})
    out = S.period_summaries(inc, ad, as_of=as_of).set_index("period_kind")
    after = out.loc["after"]
    assert after["period_end"] < after["period_start"]
    assert (after["n"], after["n_censored"], after["n_acknowledged"], after["share_over_4h_n"]) == (0, 0, 0, 0)
    assert math.isnan(after["median_s"]) and math.isnan(after["handoffs_per_incident"])
    assert math.isnan(after["median_tta_s"]) and math.isnan(after["after_hours_share"])
    assert math.isnan(after["incident_rate_per_30d"])  # no exposure
    # the before window [adopted - 210 d, adopted - 30 d), from the data's start: the incident 60 days
    # before as_of (40 days before is in the transition window)
    assert out.loc["before", "n"] == 1
    # data_start after the before window's end: that window is empty too
    late = S.period_summaries(inc, ad, as_of=as_of, data_start=as_of - pd.Timedelta(days=30)).set_index("period_kind")
    assert late.loc["before", "n"] == 0 and late.loc["before", "exposure_days"] == 0.0
    assert late.loc["after", "n"] == 0


def test_period_summaries_leave_out_a_duration_that_is_not_a_number():
    inc, ad = _panel(np.random.default_rng(17), n_teams=2)
    as_of = pd.Timestamp("2025-01-10", tz=UTC)
    prep, _ = S.prepare_incidents(inc, as_of)
    prep.loc[40, "ttr_s"] = np.nan
    team, created = prep.loc[40, "team"], prep.loc[40, "created_ns"]
    out = S.period_summaries(inc, ad, as_of=as_of, prepared=(prep, as_of))
    month = out[(out["team"] == team) & (out["period_kind"] == "month")
                & (out["period_start"].map(lambda t: t.value) <= created)
                & (out["period_end"].map(lambda t: t.value) > created)].iloc[0]
    sel = ((prep["team"] == team) & (prep["created_ns"] >= month["period_start"].value)
           & (prep["created_ns"] < month["period_end"].value)).to_numpy()
    assert sel.sum() == 6 and month["n"] == 5  # the incident counts in the rate, not in the durations
    assert month["exposure_days"] == (month["period_end"] - month["period_start"]).days
    assert month["incident_rate_per_30d"] == pytest.approx(6 * 30 / month["exposure_days"])
    assert month["median_s"] == float(np.median(prep.loc[sel, "ttr_s"].dropna()))


def test_binomial_fast_paths_are_scipys_bit_for_bit():
    rng = np.random.default_rng(12)
    for trial in range(1500):
        n = int(rng.integers(1, 300)) if trial % 2 else int(rng.integers(300, 20_000))
        k = int(rng.integers(0, n + 1))
        p = [float(rng.random()), k / n, 0.5, 1e-4, 1 - 1e-4][trial % 5]
        assert S.comparisons._binomtest_two_sided(k, n, p) == float(sps.binomtest(k, n, p).pvalue), (k, n, p)
        for kk in (-1, k - 1, k, n, n + 1):
            assert S.comparisons._binom_sf(kk, n, p) == float(sps.binom.sf(kk, n, p)), (kk, n, p)
            assert S.comparisons._binom_cdf(kk, n, p) == float(sps.binom.cdf(kk, n, p)), (kk, n, p)
        if 0 < k:
            for q in (0.025, 0.975):
                assert S.comparisons._beta_ppf(q, k, n - k + 1) == float(sps.beta.ppf(q, k, n - k + 1))


def test_poisson_ci_is_the_chi_square_formula_bit_for_bit():
    alpha = 1.0 - 0.95  # 0.05000000000000004, as poisson_ci computes it
    for k in list(range(0, 400)) + [10_000, 123_457]:
        low = 0.0 if k == 0 else float(sps.chi2.ppf(alpha / 2.0, 2 * k) / 2.0)
        high = float(sps.chi2.ppf(1.0 - alpha / 2.0, 2 * k + 2) / 2.0)
        assert S.poisson_ci(k) == (low, high), k


def test_fixed_effects_solve_matches_a_dense_ridge_solve():
    """The Schur-complement solve gives the dense (teams + months) ridge system's fitted values,
    also with a team left out and with a team and a month without untreated cells."""
    rng = np.random.default_rng(13)
    n_t, n_m = 30, 20
    cells = [(t, m) for t in range(n_t) for m in range(n_m) if rng.random() < 0.6 and t != 7 and m != 3]
    t_idx = np.array([c[0] for c in cells])
    m_idx = np.array([c[1] for c in cells])
    w = rng.integers(1, 9, len(cells)).astype(float)
    s = w * (rng.normal(0, 1, n_t)[t_idx] + rng.normal(0, 1, n_m)[m_idx] + rng.normal(0, 0.1, len(cells)))
    for keep in (np.ones(n_t, dtype=bool), np.arange(n_t) != 4):
        a, b, th, mh = S.org._fe_solve(t_idx, m_idx, w, s, n_t, n_m, keep)
        k = keep[t_idx]
        A = np.zeros((n_t + n_m, n_t + n_m))
        rhs = np.zeros(n_t + n_m)
        for t, m, ww, ss in zip(t_idx[k], m_idx[k], w[k], s[k]):
            A[t, t] += ww
            A[n_t + m, n_t + m] += ww
            A[t, n_t + m] += ww
            A[n_t + m, t] += ww
            rhs[t] += ss
            rhs[n_t + m] += ss
        sol = np.linalg.solve(A + 1e-11 * A.diagonal().max() * np.eye(n_t + n_m), rhs)
        fitted = (a[:, None] + b[None, :])[t_idx[k], m_idx[k]]
        dense = (sol[:n_t][:, None] + sol[n_t:][None, :])[t_idx[k], m_idx[k]]
        assert np.allclose(fitted, dense, rtol=0, atol=1e-9)
        assert not th[7] and not mh[3] and th[keep & (np.arange(n_t) != 7)].all()
        assert th[4] == keep[4]


def test_statistics_with_prepared_incidents_are_the_same():
    inc, ad = _panel(np.random.default_rng(14), noise=0.5)
    inc["acknowledged_at"] = inc["created_at"] + pd.Timedelta(minutes=3)
    as_of = pd.Timestamp("2025-01-10", tz=UTC)
    prepared = S.prepare_incidents(inc, as_of)
    pd.testing.assert_frame_equal(S.period_summaries(inc, ad, as_of=as_of, prepared=prepared),
                                  S.period_summaries(inc, ad, as_of=as_of))
    pd.testing.assert_frame_equal(S.team_comparisons(inc, ad, as_of=as_of, prepared=prepared),
                                  S.team_comparisons(inc, ad, as_of=as_of))
    assert S.org_rate_effect(inc, ad, as_of=as_of, prepared=prepared) == S.org_rate_effect(inc, ad, as_of=as_of)
