"""The leadership report's HTML (the files around it, PDF, CSV and Parquet: ``files.py``).

* index.html is self-contained: CSS inline, charts as inline SVG (charts.py), no script, no font or
  image requests; a Content-Security-Policy forbids loading anything anyway.
* Every string that came from an API or the ownership file (team, service, stream names, quarantine
  reasons) goes through ``esc`` (html.escape) before it reaches the page, and data never goes into an
  attribute: element ids are positional (``team-3``) and ``data-*`` values are our own numbers.
* The executive summary's numbers come from ``data.summary_numbers`` and are tagged on the page with
  ``data-summary="<key>"`` so tests can compare them with the marts.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Sequence

import pandas as pd

from pipelines.report import charts
from pipelines.report.data import (
    PRIMARY_VARIANT,
    SENSITIVITY_VARIANT,
    TEAM_METRICS,
    ReportData,
    summary_numbers,
    to_date,
)
from pipelines.report.format import (
    DASH,
    fmt_bytes,
    fmt_change,
    fmt_count,
    fmt_date,
    fmt_datetime,
    fmt_duration,
    fmt_mde,
    fmt_number,
    fmt_p,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    missing,
)
from pipelines.report.html import VERDICT_TEXT, esc, figure, num, ratio_ci, table, verdict_badge

log = logging.getLogger(__name__)

CSS_PATH = Path(__file__).with_name("report.css")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

__all__ = ["render_html", "summary_numbers", "fmt_duration", "REPORT_FILES"]

REPORT_FILES = ("index.html", "report.pdf")

METRIC_LABEL = {
    "time_to_resolve": "Time to resolve",
    "time_to_acknowledge": "Time to acknowledge",
    "incident_rate": "Incidents",
    "after_hours": "After-hours share",
    "handoffs": "Handoffs",
    "deployment_frequency": "Deployments",
    "change_failure_rate": "Change failure rate",
}



def _team_names(data: ReportData) -> dict[str, str]:
    names = {}
    for r in data.teams.itertuples(index=False):
        name = getattr(r, "team_name", None)
        names[str(r.team_key)] = str(name) if not missing(name) and str(name).strip() else str(r.team_key)
    return names


def _join_names(names: Sequence[str]) -> str:
    """Escaped, comma-separated names."""
    return ", ".join(f'<span class="name">{esc(n)}</span>' for n in names)


# --------------------------------------------------------------------------------------- sections


def _org_row(data: ReportData, metric: str) -> dict:
    if data.org.empty or "metric" not in data.org:
        return {}
    rows = data.org[data.org["metric"] == metric]
    return rows.iloc[0].to_dict() if len(rows) else {}


def _primary(data: ReportData, metric: str = "time_to_resolve", variant: str = PRIMARY_VARIANT) -> pd.DataFrame:
    c = data.comparisons
    if c.empty:
        return c
    return c[(c["metric"] == metric) & (c["variant"] == variant)].sort_values("team")


def _range_words(lo: float, hi: float, less: str = "faster", more: str = "slower") -> str:
    """'between 5 % and 44 % faster' / 'from 69 % faster to 79 % slower'."""
    def word(r: float) -> str:
        return f"{(1 - r) * 100:.0f} % {less}" if r < 1 else f"{(r - 1) * 100:.0f} % {more}"
    if hi < 1:
        return f"between {(1 - hi) * 100:.0f} % and {(1 - lo) * 100:.0f} % {less}"
    if lo > 1:
        return f"between {(lo - 1) * 100:.0f} % and {(hi - 1) * 100:.0f} % {more}"
    return f"from {word(lo)} to {word(hi)}"


def summary_section(data: ReportData) -> str:
    s = data.summary
    names = _team_names(data)
    prim = _primary(data)
    by_verdict: dict[str, list[str]] = {}
    for r in prim.itertuples(index=False):
        by_verdict.setdefault(r.verdict, []).append(names.get(r.team, r.team))
    not_adopted = [names.get(str(t.team_key), str(t.team_key)) for t in data.teams.itertuples(index=False)
                   if missing(getattr(t, "adopted_on", None))]

    ratio, lo, hi = s["org_ttr_ratio"], s["org_ttr_ci_low"], s["org_ttr_ci_high"]
    verdict = s["org_ttr_verdict"] or "insufficient_data"
    parts = ['<section id="summary" class="summary">', "<h2>Executive summary</h2>"]

    # the headline
    if ratio is None or verdict == "insufficient_data":
        treated = s['org_ttr_n_treated_teams'] or 0
        head = ("<p class=\"headline\">There is not yet enough data for an organisation-wide answer: it needs at "
                "least two teams that adopted service ownership and 20 incidents on each side of adoption "
                f"(now: {num(fmt_count(treated, 'adopting team'), 'org_ttr_n_treated_teams', treated)}).</p>")
        meaning = ""
    else:
        change = fmt_change(ratio, "less time", "more time") if abs(ratio - 1) >= 0.005 else "about as long"
        teams_adopted = num(fmt_count(s["org_ttr_n_treated_teams"], "team"), "org_ttr_n_treated_teams",
                            s["org_ttr_n_treated_teams"])
        figures = (f"{num(fmt_ratio(ratio), 'org_ttr_ratio', ratio)} "
                   f"(95 % CI {num(fmt_ratio(lo), 'org_ttr_ci_low', lo)} to {num(fmt_ratio(hi), 'org_ttr_ci_high', hi)})")
        if verdict in ("improved", "worsened", "equivalent"):
            head = (f'<p class="headline">Across the {teams_adopted} that adopted service ownership, a typical '
                    f"incident now takes {num(change, 'org_ttr_change')} to resolve than the teams that had not "
                    f"adopted (yet) predict: {figures}.</p>")
        else:
            # Lead with the uncertainty: a point estimate read alone would overstate what we know.
            head = (f'<p class="headline">We cannot tell yet whether service ownership changed how long incidents '
                    f"take to resolve across the {teams_adopted} that adopted it. The best estimate is "
                    f"{num(change, 'org_ttr_change')}, {figures}, but the range includes no change.</p>")
        if verdict == "improved":
            meaning = (f"The whole range is below ×1: resolution got faster, {esc(_range_words(lo, hi))}.")
        elif verdict == "worsened":
            meaning = (f"The whole range is above ×1: resolution got slower, {esc(_range_words(lo, hi))}.")
        elif verdict == "equivalent":
            meaning = "Any change is within ±25 %: no meaningful change in either direction."
        else:
            meaning = f"The range runs {esc(_range_words(lo, hi))}: <strong>cannot tell yet</strong>."
            if s["org_ttr_mde"] is not None:
                mde = num(fmt_mde(s['org_ttr_mde']), 'org_ttr_mde', s['org_ttr_mde'])
                meaning += (f" With this much data only a change of about {mde} "
                            "or more would reliably show.")
        placebo = s["org_ttr_placebo_p"]
        if placebo is not None:
            if placebo < 0.05:
                meaning += (f" <strong>Caution:</strong> before adopting, the adopting teams already differed from "
                            f"the others (pre-trend check {num(fmt_p(placebo), 'org_ttr_placebo_p', placebo)}), so this "
                            "estimate may be biased.")
            else:
                meaning += (" Before adopting, the adopting teams tracked the others (pre-trend check "
                            f"{num(fmt_p(placebo), 'org_ttr_placebo_p', placebo)}), which supports the comparison.")
        meaning = f"<p>{meaning}</p>"
    parts += [head, meaning]

    # key figures
    compared = s["teams_compared"]
    cards = [
        ("Organisation-wide change in typical time to resolve",
         num(fmt_ratio(ratio), None) if ratio is not None else num(DASH),
         (f"95 % CI {esc(fmt_ratio(lo))} to {esc(fmt_ratio(hi))} · " if ratio is not None else "") + verdict_badge(verdict)),
        ("Teams improved", num(f"{s['teams_improved']} of {compared}", "teams_improved", s["teams_improved"]),
         "time to resolve, 95 % CI below ×1"),
        ("Teams worsened", num(f"{s['teams_worsened']} of {compared}", "teams_worsened", s["teams_worsened"]),
         "time to resolve, 95 % CI above ×1"),
        ("Cannot tell yet", num(f"{s['teams_cannot_tell']} of {compared}", "teams_cannot_tell", s["teams_cannot_tell"]),
         "inconclusive or too few incidents"),
    ]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="card-label">{esc(label)}</div><div class="card-value">{value}</div>'
        f'<div class="card-sub">{sub}</div></div>' for label, value, sub in cards) + "</div>")

    # teams in plain words
    items = []
    lead = (f"Of {num(fmt_count(s['teams_total'], 'team'), 'teams_total', s['teams_total'])}, "
            f"{num(str(s['teams_adopted']), 'teams_adopted', s['teams_adopted'])} "
            f"{'has' if s['teams_adopted'] == 1 else 'have'} adopted service ownership. "
            "Comparing each team's six months before adoption with its six months after (leaving out the month on "
            f"either side), for {num(fmt_count(compared, 'team'), 'teams_compared', compared)}:")

    def names_of(v: str) -> str:
        return f": {_join_names(by_verdict.get(v, []))}" if by_verdict.get(v) else ""

    items.append(f"{num(fmt_count(s['teams_improved'], 'team'), None)} improved: typical time to resolve got "
                 f"shorter and the 95 % CI excludes no change{names_of('improved')}.")
    items.append(f"{num(fmt_count(s['teams_worsened'], 'team'), None)} worsened{names_of('worsened')}.")
    if s["teams_equivalent"]:
        items.append(f"{num(fmt_count(s['teams_equivalent'], 'team'), 'teams_equivalent', s['teams_equivalent'])} "
                     f"changed by less than ±25 % (no meaningful change){names_of('equivalent')}.")
    why = []
    if s["teams_inconclusive"]:
        w = (f"{num(str(s['teams_inconclusive']), 'teams_inconclusive', s['teams_inconclusive'])} inconclusive: the "
             f"95 % CI includes both faster and slower{names_of('inconclusive')}")
        if s["teams_inconclusive_low_power"]:
            w += (f" ({num(str(s['teams_inconclusive_low_power']), 'teams_inconclusive_low_power', s['teams_inconclusive_low_power'])} "
                  "of them had too few incidents to detect even a 50 % change)")
        why.append(w)
    if s["teams_insufficient_data"]:
        why.append(f"{num(str(s['teams_insufficient_data']), 'teams_insufficient_data', s['teams_insufficient_data'])} "
                   f"with fewer than 20 incidents on one side (insufficient data){names_of('insufficient_data')}")
    items.append(f"{num(fmt_count(s['teams_cannot_tell'], 'team'), None)} cannot tell yet"
                 + (": " + "; ".join(why) if why else "") + ".")
    if s["teams_not_adopted"]:
        items.append(f"{num(fmt_count(s['teams_not_adopted'], 'team'), 'teams_not_adopted', s['teams_not_adopted'])} "
                     f"{'has' if s['teams_not_adopted'] == 1 else 'have'} not adopted yet: {_join_names(not_adopted)}. "
                     f"{'It serves' if s['teams_not_adopted'] == 1 else 'They serve'} as the comparison group.")
    signif = s["teams_improved"] + s["teams_worsened"]
    if compared:
        significant_fdr = s['teams_improved_fdr'] + s['teams_worsened_fdr']
        items.append(f"With {esc(fmt_count(compared, 'team'))} compared, about {esc(f'{0.05 * compared:.1f}')} "
                     "“improved” or “worsened” verdicts are expected by chance alone; "
                     f"{num(str(significant_fdr), 'teams_significant_fdr', significant_fdr)} "
                     f"of the {esc(str(signif))} hold after correcting for that (Benjamini–Hochberg, q &lt; 0.05).")
    parts.append(f"<p>{lead}</p><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")

    # secondary measures
    other = []
    for short, metric, less, more in (("tta", "time_to_acknowledge", "shorter", "longer"),
                                      ("rate", "incident_rate", "fewer", "more")):
        r = s[f"org_{short}_ratio"]
        if r is None:
            continue
        label = {"tta": "Time to acknowledge", "rate": "Number of incidents"}[short]
        other.append(f"<li>{esc(label)}: {num(fmt_ratio(r), f'org_{short}_ratio', r)} "
                     f"(95 % CI {num(fmt_ratio(s[f'org_{short}_ci_low']), f'org_{short}_ci_low', s[f'org_{short}_ci_low'])} to "
                     f"{num(fmt_ratio(s[f'org_{short}_ci_high']), f'org_{short}_ci_high', s[f'org_{short}_ci_high'])}), "
                     f"{verdict_badge(s[f'org_{short}_verdict'])}.</li>")
    if other:
        parts.append("<p>Other organisation-wide measures, same method:</p><ul>" + "".join(other) + "</ul>")

    parts.append(
        '<p class="note">Time to resolve is the paging source’s triggered → resolved time. “Typical” is the geometric '
        "mean, which a single very long incident cannot swing, unlike the mean (MTTR). Per-team before/after "
        "comparisons do not prove cause: an organisation-wide trend moves them too. The organisation-wide "
        "figure compares with teams that had not adopted yet and is the one to quote. "
        f"Data as of {num(fmt_datetime(data.as_of), 'as_of', s['as_of'] or '')}; "
        f"{num(fmt_count(s['incidents_analysed'], 'incident'), 'incidents_analysed', s['incidents_analysed'])} "
        "analysed. Methods and caveats are at the end.</p>")
    parts.append("</section>")
    return "".join(parts)


def baseline_section(data: ReportData) -> str:
    b = data.baselines
    rows = []
    for r in b.itertuples(index=False):
        kind = {"pre_adoption_90d": "90 days before adoption", "trailing_90d": "last 90 days (not adopted)"}.get(
            r.period_kind, str(r.period_kind))
        med = fmt_duration(r.median_seconds_to_resolve)
        ci = (f"{fmt_duration(r.median_ci_low_seconds)} to {fmt_duration(r.median_ci_high_seconds)}"
              if not missing(r.median_ci_low_seconds) else "too few for a CI")
        p90 = fmt_duration(r.p90_seconds_to_resolve) if not missing(r.p90_seconds_to_resolve) else "too few (< 20)"
        rows.append([
            f'<span class="name">{esc(r.team_name if not missing(r.team_name) else r.team_key)}</span>',
            num(fmt_date(r.adopted_on) if not missing(r.adopted_on) else "not yet"),
            esc(kind),
            num(fmt_count(r.n_incidents, "incident")),
            num(fmt_number(r.incidents_per_30_days, 1, "incidents")),
            num(med) + f'<div class="sub">{esc(ci)}</div>',
            num(p90),
            num(fmt_duration(r.median_seconds_to_acknowledge)),
            num(fmt_count(r.n_open, "incident")),
        ])
    t = table(["Team", "Adopted service ownership", "Baseline window", "Incidents", "Per 30 days",
               "Median time to resolve (95 % CI)", "p90 time to resolve", "Median time to acknowledge",
               "Still open"], rows, cls="baselines", numeric=(3, 4, 5, 6, 7, 8))
    return ('<section id="baselines"><h2>Per-team baseline</h2>'
            "<p>Where each team started: the 90 days before it adopted service ownership (or the last 90 days for "
            "teams that have not adopted). Medians count resolved incidents; incidents still open are listed, not "
            "dropped. p90 is the time 9 in 10 incidents were resolved within; it needs at least 20 incidents.</p>"
            f"{t}</section>")


def _forest_rows(data: ReportData, metric: str = "time_to_resolve") -> list[charts.ForestRow]:
    names = _team_names(data)
    rows = []
    for r in _primary(data, metric).itertuples(index=False):
        if r.verdict == "insufficient_data" or missing(r.estimate):
            note = f"insufficient data ({r.n_before} before, {r.n_after} after)"
        else:
            note = f"{fmt_ratio(r.estimate)} ({fmt_ratio(r.ci_low)} to {fmt_ratio(r.ci_high)}), {VERDICT_TEXT[r.verdict]}"
            if r.low_power and r.verdict in ("inconclusive", "equivalent"):
                note += ", low power"
        rows.append(charts.ForestRow(names.get(r.team, r.team), r.estimate, r.ci_low, r.ci_high, r.verdict, note))
    org = _org_row(data, metric)
    if org:
        est = org.get("estimate")
        verdict = org.get("verdict") or "insufficient_data"
        note = ("insufficient data" if verdict == "insufficient_data" or missing(est) else
                f"{fmt_ratio(est)} ({fmt_ratio(org.get('ci_low'))} to {fmt_ratio(org.get('ci_high'))}), "
                f"{VERDICT_TEXT.get(verdict, verdict)}")
        rows.append(charts.ForestRow("Organisation", est, org.get("ci_low"), org.get("ci_high"), verdict, note,
                                     overall=True))
    return rows


def forest_section(data: ReportData) -> str:
    names = _team_names(data)
    svg = charts.forest_plot(_forest_rows(data), title="Time to resolve after ÷ before adoption, per team",
                             axis_label="typical time to resolve, after ÷ before (log scale)")
    legend = " ".join(verdict_badge(v) for v in ("improved", "worsened", "equivalent", "inconclusive",
                                                 "insufficient_data"))
    rows = []
    for r in _primary(data).itertuples(index=False):
        rows.append([
            f'<span class="name">{esc(names.get(r.team, r.team))}</span>',
            num(fmt_date(r.adopted_on)),
            num(f"{r.n_before:,} / {r.n_after:,}"),
            ratio_ci(r.estimate, r.ci_low, r.ci_high),
            verdict_badge(r.verdict, bool(r.low_power), "time_to_resolve"),
            num(fmt_mde(r.mde)),
            num(DASH if missing(r.q_value) else "< 0.001" if r.q_value < 0.001 else fmt_number(r.q_value, 3)),
        ])
    t = table(["Team", "Adopted", "Incidents before / after", "After ÷ before (95 % CI)", "Verdict",
               "Smallest detectable change", "q (Benjamini–Hochberg)"],
              rows, cls="comparisons", numeric=(2, 3, 5, 6))
    return ('<section id="before-after"><h2>Before and after adoption, per team</h2>'
            "<p>The ratio of typical (geometric-mean) time to resolve in the six months after adoption to the six "
            "months before, with its 95 % confidence interval. Left of ×1 is faster. A team is “improved” only when "
            "its whole interval is left of ×1. The grey band is ±25 %: an interval inside it means no meaningful "
            "change.</p>"
            + figure(svg, "Forest plot: each team’s after ÷ before ratio (marker) and 95 % CI (line); the diamond "
                          "is the organisation-wide estimate against teams not yet adopted.", "forest")
            + f'<p class="legend">{legend}</p>' + t + "</section>")


def event_section(data: ReportData) -> str:
    ev = data.events
    pts = []
    if not ev.empty and "metric" in ev:
        for r in ev[ev["metric"] == "time_to_resolve"].itertuples(index=False):
            pts.append(charts.EventPoint(int(r.event_month), r.estimate, r.ci_low, r.ci_high,
                                         pre=(r.kind != "imputed_post"), n=int(r.n_incidents)))
    org = _org_row(data, "time_to_resolve")
    if not pts:
        body = "<p class=\"muted\">No event-study estimate yet: it needs at least two adopting teams.</p>"
    else:
        svg = charts.event_study(pts, title="Organisation-wide time to resolve by month since adoption",
                                 transition_months=data.transition_days / (365.25 / 12))
        body = figure(svg, "Event study: for each month relative to a team’s adoption, actual ÷ expected typical "
                           "time to resolve across adopting teams (95 % CI). Expected = what teams not yet adopted "
                           "saw that month.", "event")
    rows = []
    for metric in ("time_to_resolve", "time_to_acknowledge", "incident_rate"):
        o = _org_row(data, metric)
        if not o:
            continue
        rows.append([esc(METRIC_LABEL[metric]), ratio_ci(o.get("estimate"), o.get("ci_low"), o.get("ci_high")),
                     verdict_badge(o.get("verdict"), bool(o.get("low_power"))), num(fmt_mde(o.get("mde"))),
                     num(fmt_p(o.get("placebo_p")) if not missing(o.get("placebo_p")) else DASH),
                     num(f"{int(o.get('n_treated_teams') or 0)} of {int(o.get('n_teams') or 0)}"),
                     num(fmt_count(o.get("n_treated_incidents"), "incident"))])
    t = table(["Measure", "After ÷ expected (95 % CI)", "Verdict", "Smallest detectable change",
               "Pre-trend check", "Adopting teams", "Incidents after adoption"], rows, cls="org",
              numeric=(1, 3, 4, 5, 6))
    text = ("<p>Each adopting team is compared with what teams that had not adopted (yet) saw in the same calendar "
            "months, so organisation-wide trends and seasons cancel out. Points before adoption are a check: they "
            "should sit near ×1. Points far right rest on few teams and have wide intervals.</p>")
    if org and not missing(org.get("placebo_p")) and float(org["placebo_p"]) < 0.05:
        text += ("<p class=\"warn\">The pre-trend check failed: adopting teams already differed before adoption. "
                 "Treat the estimate with caution and consider a wider transition window.</p>")
    return f'<section id="event-study"><h2>Organisation-wide effect over time</h2>{text}{body}{t}</section>'


def _month_frame(data: ReportData, team: str) -> pd.DataFrame:
    p = data.periods
    if p.empty:
        return p
    m = p[(p["team"] == team) & (p["period_kind"] == "month")].copy()
    m["month"] = pd.to_datetime(m["period_start"], utc=True).dt.date
    return m.sort_values("month")


def _period(data: ReportData, team: str, kind: str) -> dict:
    p = data.periods
    if p.empty:
        return {}
    rows = p[(p["team"] == team) & (p["period_kind"] == kind)]
    return rows.iloc[0].to_dict() if len(rows) else {}


def _before_after_text(metric: str, r, data: ReportData, team: str) -> tuple[str, str]:
    if metric == "time_to_resolve":
        return (fmt_duration(_period(data, team, "before").get("median_s")) + " median",
                fmt_duration(_period(data, team, "after").get("median_s")) + " median")
    if metric == "time_to_acknowledge":
        return (fmt_duration(_period(data, team, "before").get("median_tta_s")) + " median",
                fmt_duration(_period(data, team, "after").get("median_tta_s")) + " median")
    if metric == "incident_rate":
        return fmt_rate(getattr(r, "rate_before", None)), fmt_rate(getattr(r, "rate_after", None))
    if metric == "deployment_frequency":
        return (fmt_rate(getattr(r, "rate_before", None), "deployments"),
                fmt_rate(getattr(r, "rate_after", None), "deployments"))
    if metric in ("after_hours", "change_failure_rate"):
        return fmt_pct(getattr(r, "share_before", None)), fmt_pct(getattr(r, "share_after", None))
    if metric == "handoffs":
        return (fmt_number(getattr(r, "mean_before", None), 2, "per incident"),
                fmt_number(getattr(r, "mean_after", None), 2, "per incident"))
    return DASH, DASH


def team_section(data: ReportData, team_key: str, index: int) -> str:
    names = _team_names(data)
    name = names.get(team_key, team_key)
    t = data.teams[data.teams["team_key"] == team_key]
    info = t.iloc[0].to_dict() if len(t) else {}
    adopted = to_date(info.get("adopted_on"))
    services = data.services[data.services["current_team_key"] == team_key]["service_name"].tolist()
    parts = [f'<section class="team" id="team-{index}">', f'<h3>{esc(name)}</h3>']
    facts = [f"adopted service ownership on {num(fmt_date(adopted))}" if adopted else "has not adopted service ownership yet"]
    if not missing(info.get("time_zone")):
        facts.append(f"business hours in {esc(info.get('time_zone'))}")
    if services:
        facts.append(f"owns {esc(fmt_count(len(services), 'service'))}: {_join_names(services)}")
    parts.append(f'<p class="facts">{esc(name)} {"; ".join(facts)}.</p>')

    comp = data.comparisons
    tc = comp[(comp["team"] == team_key) & (comp["variant"] == PRIMARY_VARIANT)] if not comp.empty else comp
    ttr = tc[tc["metric"] == "time_to_resolve"] if not tc.empty else tc
    if len(ttr):
        r = ttr.iloc[0]
        if r["verdict"] == "insufficient_data" or missing(r["estimate"]):
            line = (f"Time to resolve: not enough incidents to compare ({num(fmt_count(r['n_before'], 'incident'))} "
                    f"before, {num(fmt_count(r['n_after'], 'incident'))} after; at least 20 on each side are needed).")
        else:
            line = (f"Time to resolve: {ratio_ci(r['estimate'], r['ci_low'], r['ci_high'])}, "
                    f"{verdict_badge(r['verdict'], bool(r['low_power']), 'time_to_resolve')}: typical incidents take "
                    f"{num(fmt_change(r['estimate'], 'less time', 'more time'))} than before. "
                    f"{num(fmt_count(r['n_before'], 'incident'))} before, {num(fmt_count(r['n_after'], 'incident'))} "
                    f"after; this team’s data can detect changes of {num(fmt_mde(r['mde']))} or more.")
        parts.append(f'<p class="callout">{line}</p>')
    elif not adopted:
        parts.append('<p class="callout">No before/after comparison: the charts show the trend so far; this team is '
                     "part of the comparison group for the organisation-wide estimate.</p>")

    months = _month_frame(data, team_key)
    mstats = [charts.MonthStat(r.month, r.median_s, r.median_ci_low_s, r.median_ci_high_s,
                               r.p90_s if not missing(r.p90_s) else None, int(r.n))
              for r in months.itertuples(index=False)] if len(months) else []
    parts.append(figure(charts.monthly_bands(mstats, title=f"{name}: monthly time to resolve",
                                             adopted_on=adopted, transition_days=data.transition_days),
                        "Monthly time to resolve (log scale): median with its 95 % CI, and p90. Dashed vertical "
                        "line: adoption; grey: the transition window left out of the comparison.", "bands"))

    dep = data.deploys_monthly[data.deploys_monthly["team"] == team_key] if not data.deploys_monthly.empty else \
        data.deploys_monthly
    month_list = [r.month for r in months.itertuples(index=False)] if len(months) else []
    dep_by_month = {to_date(r.month): r for r in dep.itertuples(index=False)}
    all_months = sorted(set(month_list) | set(dep_by_month))
    partial = ""
    if data.as_of is not None and all_months and all_months[-1] == date(data.as_of.year, data.as_of.month, 1):
        partial = f"{all_months[-1].strftime('%b')}: to {data.as_of.day} {all_months[-1].strftime('%b')}"

    def series(col):
        return [(r.month, None if missing(getattr(r, col, None)) else float(getattr(r, col))) for r in
                months.itertuples(index=False)] if len(months) else []

    smalls = [
        charts.small_series([(m, (v / 60 if v is not None else None)) for m, v in series("median_tta_s")],
                            title="Median time to acknowledge", y_format=lambda v: f"{v:g} min", adopted_on=adopted,
                            transition_days=data.transition_days, colour=charts.OKABE_ITO["blue"]),
        charts.small_series([(m, (v * 100 if v is not None else None)) for m, v in series("after_hours_share")],
                            title="After-hours share of incidents", y_format=lambda v: f"{v:.0f} %",
                            adopted_on=adopted, transition_days=data.transition_days, y_max=100,
                            colour=charts.OKABE_ITO["reddish_purple"]),
        charts.small_series(series("handoffs_per_incident"), title="Handoffs per incident",
                            y_format=lambda v: f"{v:.1f}", adopted_on=adopted, transition_days=data.transition_days,
                            colour=charts.OKABE_ITO["orange"]),
        charts.small_series([(m, float(dep_by_month[m].deployments) if m in dep_by_month else 0.0) for m in all_months],
                            title="Production deployments per month", y_format=lambda v: f"{v:.0f}",
                            adopted_on=adopted, transition_days=data.transition_days, bars=True,
                            colour=charts.OKABE_ITO["bluish_green"], note=partial),
        charts.small_series([(m, (100.0 * dep_by_month[m].failed_changes / dep_by_month[m].deployments)
                              if m in dep_by_month and dep_by_month[m].deployments else None) for m in all_months],
                            title="Change failure rate", y_format=lambda v: f"{v:.0f} %", adopted_on=adopted, y_cap=100,
                            transition_days=data.transition_days, colour=charts.OKABE_ITO["vermillion"]),
    ]
    parts.append('<div class="smalls">' + "".join(f'<figure class="small">{s}</figure>' for s in smalls) + "</div>")
    parts.append('<p class="note">Small charts, per calendar month (UTC): median time to acknowledge; share of '
                 "incidents created outside the team’s business hours; reassignments, delegations and escalations "
                 "after the first assignment per incident; successful production deployments; share of those "
                 "deployments followed within 24 h by an incident on a service of the same repo.</p>")

    if len(tc):
        rows = []
        order = {m: i for i, m in enumerate(TEAM_METRICS)}
        for r in sorted(tc.itertuples(index=False), key=lambda r: order.get(r.metric, 99)):
            before, after = _before_after_text(r.metric, r, data, team_key)
            rows.append([esc(METRIC_LABEL.get(r.metric, r.metric)), esc(before), esc(after),
                         ratio_ci(r.estimate, r.ci_low, r.ci_high),
                         verdict_badge(r.verdict, bool(r.low_power), r.metric),
                         num(f"{int(r.n_before):,} / {int(r.n_after):,}")])
        parts.append(table(["Measure", "Before", "After", "After ÷ before (95 % CI)", "Verdict", "n (before / after)"],
                           rows, cls="team-metrics", numeric=(1, 2, 3, 5),
                           caption="Six months before vs six months after adoption (transition month excluded). "
                                   "Durations compare typical (geometric-mean) times; n counts incidents, or "
                                   "deployments for the last two rows."))
    parts.append("</section>")
    return "".join(parts)


def methods_section(data: ReportData) -> str:
    names = _team_names(data)
    prim = _primary(data)
    mde_rows = []
    for r in prim.itertuples(index=False):
        width = (f"{fmt_ratio(r.ci_low)} to {fmt_ratio(r.ci_high)}" if not missing(r.ci_low) else DASH)
        mde_rows.append([f'<span class="name">{esc(names.get(r.team, r.team))}</span>',
                         num(fmt_count(r.n_before, "incident")), num(fmt_count(r.n_after, "incident")),
                         num(fmt_mde(r.mde)), num(width),
                         esc("yes" if r.low_power else "no")])
    mde_table = table(["Team", "Before", "After", "Smallest change it can detect", "95 % CI", "Low power"], mde_rows,
                      cls="mde", numeric=(1, 2, 3, 4))
    sens = {r.team: r for r in _primary(data, variant=SENSITIVITY_VARIANT).itertuples(index=False)}
    sens_rows = []
    for r in prim.itertuples(index=False):
        a = sens.get(r.team)
        sens_rows.append([f'<span class="name">{esc(names.get(r.team, r.team))}</span>',
                          ratio_ci(r.estimate, r.ci_low, r.ci_high) + "<br>" + verdict_badge(r.verdict, bool(r.low_power)),
                          (ratio_ci(a.estimate, a.ci_low, a.ci_high) + "<br>" + verdict_badge(a.verdict, bool(a.low_power))
                           if a is not None else DASH)])
    sens_table = table(["Team", "Transition month left out (the result used)", "Transition month included"], sens_rows,
                       cls="sensitivity", numeric=(1, 2))
    mean_rows = []
    for r in prim.itertuples(index=False):
        b, a = _period(data, r.team, "before"), _period(data, r.team, "after")
        mean_rows.append([f'<span class="name">{esc(names.get(r.team, r.team))}</span>',
                          num(fmt_duration(b.get("mean_s_not_for_comparison"))),
                          num(fmt_duration(a.get("mean_s_not_for_comparison"))),
                          num(fmt_duration(b.get("median_s"))), num(fmt_duration(a.get("median_s")))])
    mean_table = table(["Team", "Mean before (MTTR)", "Mean after (MTTR)", "Median before", "Median after"], mean_rows,
                       cls="means", numeric=(1, 2, 3, 4),
                       caption="Appendix: arithmetic mean (MTTR), not for comparison")
    pop = data.population
    population = ""
    if pop:
        population = (
            "<h3>What is counted</h3><ul>"
            f"<li>{num(fmt_count(pop['records'], 'incident record'))} read from the paging sources. "
            f"{num(fmt_count(pop['merged'], 'merged-away incident'))} are left out (their alerts belong to another "
            f"incident); {num(fmt_count(pop['retriggers_folded'], 're-trigger'))} within 24 hours of a resolve were "
            "folded into the first incident.</li>"
            f"<li>{num(fmt_count(pop['unowned'], 'incident'))} on services that no team owns in the ownership file "
            "are left out.</li>"
            f"<li>{num(fmt_count(pop['open'], 'incident'))} still open are kept as “at least this long” (censored), "
            f"never dropped. {num(fmt_count(pop['auto_resolved'], 'incident'))} were resolved automatically "
            "(timeouts); they are included.</li>"
            f"<li>Both urgencies are included: {num(fmt_count(pop['high_urgency'], 'high-urgency incident'))} and "
            f"{num(fmt_count(pop['low_urgency'], 'low-urgency incident'))}. A change in the urgency mix at adoption "
            "is not adjusted for.</li>"
            "<li>An incident belongs to the team that owned its service on the day it was created; after hours is "
            "judged in that team’s time zone; months are calendar months in UTC.</li></ul>")
    t = data.transition_days
    return (
        '<section id="methods"><h2>Methods and caveats</h2>'
        "<h3>Why not mean time to resolve (MTTR)?</h3>"
        "<p>Incident durations are very uneven: most are resolved within an hour, a few take days. One long outage "
        "moves the average by hours, so the mean goes up or down about half the time even when nothing changed. "
        "This report therefore uses the median (the middle incident) to describe a team, and the geometric mean "
        "(the “typical” incident, averaged on a log scale) to compare before with after. Results are ratios: ×0.75 "
        "means typical incidents take 25 % less time. The mean appears only in the appendix table below.</p>"
        "<h3>What the verdicts mean</h3><ul>"
        f"<li>{verdict_badge('improved')} / {verdict_badge('worsened')}: the whole 95 % confidence interval is on one "
        "side of ×1.</li>"
        f"<li>{verdict_badge('equivalent')}: the change is within ±25 % with 95 % confidence (an equivalence test).</li>"
        f"<li>{verdict_badge('inconclusive')}: the interval includes both a gain and a loss. This is not “no change”: "
        "the data cannot tell yet.</li>"
        f"<li>{verdict_badge('insufficient_data')}: fewer than 20 incidents on one side. No verdict is given; only "
        "the numbers are shown.</li>"
        "<li><span class=\"lowpower\">low power</span>: fewer than 50 incidents on a side, or the smallest change the "
        "data could reliably detect (80 % of the time) is above 50 %. A low-power “cannot tell yet” means the data "
        "could not have shown a moderate effect.</li></ul>"
        "<h3>Each team’s smallest detectable change</h3>"
        "<p>The reduction in typical time to resolve that this team’s number of incidents would detect 80 % of the "
        "time. Changes smaller than this can be real and still go unseen.</p>"
        f"{mde_table}"
        "<h3>The transition window</h3>"
        f"<p>The {num(fmt_count(t, 'day'))} before and after each adoption date are left out: teams prepare before "
        "the date and settle in after it. The comparison uses the six months before and the six months after that "
        "window. The table shows each team’s result with the transition month included too, as a check that the "
        "choice does not drive the verdict.</p>"
        f"{sens_table}"
        "<h3>The organisation-wide estimate</h3>"
        "<p>A staggered difference-in-differences: a model of team and calendar-month effects is fitted on incidents "
        "of teams that had not adopted (yet), predicts what adopting teams would have seen without adopting, and the "
        "report shows actual ÷ predicted. Its confidence interval leaves out one team at a time (jackknife), so it "
        "reflects how much teams differ, not just how many incidents there are. The pre-trend check holds out the "
        "three months before each transition window: a small p value there means adopting teams already differed.</p>"
        "<h3>Many teams at once</h3>"
        "<p>With many teams, some “improved” verdicts appear by chance. The q value (Benjamini–Hochberg) corrects "
        "for that: use q &lt; 0.05 when claiming which teams changed. Do not rank teams by their raw ratios.</p>"
        f"{population}"
        f"{mean_table}"
        "<p class=\"note\">Details: docs/statistics.md in the repository.</p></section>")


def quality_section(data: ReportData) -> str:
    rows = []
    stale_after = pd.Timedelta(hours=36)
    now = pd.Timestamp(data.generated_at)
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    for r in data.freshness.itertuples(index=False):
        last = pd.Timestamp(r.last_sync) if not missing(r.last_sync) else None
        stale = last is not None and (now - (last.tz_localize("UTC") if last.tzinfo is None else last)) > stale_after
        rows.append([esc(r.source), num(fmt_datetime(r.last_sync)) + (' <span class="warn">stale</span>' if stale else ""),
                     num(fmt_datetime(r.newest_record)), num(fmt_count(r.streams, "stream"))])
    fresh = table(["Source", "Last sync", "Newest record synced", "Streams"], rows, cls="freshness", numeric=(3,))
    run_rows = [[esc(r.source), esc(r.stream), num(fmt_count(r.records, "record")), num(fmt_count(r.requests, "request")),
                 num(fmt_count(r.retries, "retry", "retries")), num(fmt_count(r.throttled, "response")),
                 num(fmt_bytes(r.bytes)), num(fmt_datetime(r.finished_at))]
                for r in data.last_runs.itertuples(index=False)]
    runs = table(["Source", "Stream", "Records", "Requests", "Retries", "Throttled (429)", "Received", "Finished"],
                 run_rows, cls="runs", numeric=(2, 3, 4, 5, 6))
    q = data.quarantine
    if q.empty:
        quarantine = ('<p data-summary="quarantined_records" data-value="0">No records were quarantined: every '
                      "record read passed validation.</p>")
    else:
        total = int(q["records"].sum())
        qrows = [[esc(r.source), esc(r.stream), esc(r.rule), num(fmt_count(r.records, "record")),
                  f'<span class="reason">{esc(charts._truncate(r.example_reason, 160))}</span>',
                  num(fmt_datetime(r.last_rejected_at))] for r in q.itertuples(index=False)]
        quarantine = (f"<p>{num(fmt_count(total, 'record'), 'quarantined_records', total)} were quarantined (kept "
                      "with the reason in quarantine.rejected_records, not counted in any metric):</p>"
                      + table(["Source", "Stream", "Rule", "Records", "Example reason", "Last seen"], qrows,
                              cls="quarantine", numeric=(3,)))
    by_what: dict[str, list[str]] = {}
    for r in data.sources.itertuples(index=False):
        key = f"source_{r.source}_{r.what.replace(' ', '_')}"
        by_what.setdefault(r.what, []).append(f"{esc(r.label)} {num(f'{int(r.records):,}', key, int(r.records))}")
    mix = ("<ul class=\"sources\">" + "".join(f"<li>{esc(what.capitalize())}: {' · '.join(items)}</li>"
                                              for what, items in by_what.items()) + "</ul>") if by_what else ""
    return ('<section id="data-quality"><h2>Data freshness and quality</h2>'
            f"<p>Report generated {num(fmt_datetime(data.generated_at))}; data as of {num(fmt_datetime(data.as_of))} "
            "(the newest paging record; incidents still open are measured up to then).</p>"
            + ("<h3>Sources</h3><p>Every source is counted with the same definitions; what each brought:</p>" + mix
               if mix else "")
            + "<h3>Last sync per source</h3>" + fresh
            + "<h3>The latest sync run</h3>" + runs
            + "<h3>Quarantined records</h3>" + quarantine + "</section>")


def files_section(files: Sequence[str]) -> str:
    items = "".join(f"<li>{esc(f)}</li>" for f in files)
    return ('<section id="files"><h2>Tables in this folder</h2><p>Every table is next to this page as CSV and '
            f"Parquet:</p><ul class=\"files\">{items}</ul></section>")


def render_html(data: ReportData, exported: Sequence[str] = ()) -> str:
    """The whole page as a string (pure: no I/O besides reading the stylesheet)."""
    css = CSS_PATH.read_text(encoding="utf-8")
    names = _team_names(data)
    team_keys = list(data.teams["team_key"]) if "team_key" in data.teams else []
    adopted_first = sorted(team_keys, key=lambda k: (missing(data.teams.set_index("team_key").at[k, "adopted_on"]),
                                                     names.get(k, k).lower()))
    toc = "".join(f'<li><a href="#team-{i}">{esc(names.get(k, k))}</a></li>' for i, k in enumerate(adopted_first, 1))
    teams_html = "".join(team_section(data, k, i) for i, k in enumerate(adopted_first, 1))
    title = "Incident response and service ownership"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}, {esc(fmt_date(data.generated_at))}</title>
<style>{css}</style></head><body>
<header class="top"><h1>{esc(title)}</h1>
<p class="meta">Report of {num(fmt_date(data.generated_at))} · data as of {num(fmt_datetime(data.as_of))} ·
{num(fmt_count(data.summary['teams_total'], 'team'))} · {num(fmt_count(data.summary['incidents_analysed'], 'incident'))}</p></header>
<main>
{summary_section(data)}
{baseline_section(data)}
{forest_section(data)}
{event_section(data)}
<section id="teams"><h2>Teams</h2><p>One section per team: the monthly trend and the before/after comparison.</p>
<ol class="toc">{toc}</ol></section>
{teams_html}
{methods_section(data)}
{quality_section(data)}
{files_section(exported)}
</main></body></html>
"""
