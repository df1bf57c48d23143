"""Hand-written inline SVG charts for the report: plain functions from numbers to an ``<svg>`` string.

No JavaScript, no external fonts or stylesheets: every chart is a self-contained SVG element that
the HTML embeds directly, so the report needs no network and prints as vectors.

* Colours come from the Okabe-Ito palette (distinguishable with every common colour-vision
  deficiency), and nothing relies on colour alone: verdicts also differ by marker shape and are
  written out as text next to each row; lines differ by dash pattern.
* Every string that reaches an SVG (team names above all: they come from the ownership file or
  an API) is escaped here with ``html.escape``; callers pass plain text, never markup.
* Ratios and durations use log axes: incident durations are heavy-tailed, and ×0.5 and ×2 are the
  same size of change.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Iterable, Sequence

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
GREY = "#6b6b6b"
LIGHT_GREY = "#d9d9d9"
INK = "#1a1a1a"

# verdict -> (colour, marker shape, label). Shapes make the verdict readable without colour.
VERDICT_STYLE = {
    "improved": (OKABE_ITO["blue"], "triangle_down", "improved"),
    "worsened": (OKABE_ITO["vermillion"], "triangle_up", "worsened"),
    "equivalent": (OKABE_ITO["bluish_green"], "diamond", "no meaningful change (within ±25 %)"),
    "inconclusive": (GREY, "circle", "cannot tell yet"),
    "insufficient_data": (GREY, "none", "insufficient data"),
}

FONT = 'font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"'


def esc(text: object) -> str:
    """Escape any value for SVG/HTML text and attribute content."""
    return html.escape("" if text is None else str(text), quote=True)


def _f(x: float) -> str:
    """A coordinate: two decimals are plenty and keep the SVG small."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------- scales


@dataclass(frozen=True)
class Scale:
    lo: float
    hi: float
    px_lo: float
    px_hi: float
    log: bool = False

    def __call__(self, v: float) -> float:
        a, b, x = (math.log(self.lo), math.log(self.hi), math.log(max(v, 1e-12))) if self.log else (self.lo, self.hi, v)
        if b == a:
            return (self.px_lo + self.px_hi) / 2
        return self.px_lo + (x - a) / (b - a) * (self.px_hi - self.px_lo)

    def clamp(self, v: float) -> float:
        return min(max(v, min(self.lo, self.hi)), max(self.lo, self.hi))


RATIO_TICKS = (0.0625, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0)

DURATION_TICKS = (
    (10, "10 s"), (30, "30 s"), (60, "1 min"), (120, "2 min"), (300, "5 min"), (600, "10 min"),
    (900, "15 min"), (1800, "30 min"), (3600, "1 h"), (7200, "2 h"), (14400, "4 h"), (28800, "8 h"),
    (86400, "1 d"), (172800, "2 d"), (604800, "1 wk"), (2592000, "30 d"),
)


def ratio_label(v: float) -> str:
    return "×" + (f"{v:.4f}".rstrip("0").rstrip(".") if v < 10 else f"{v:.0f}")


def ratio_range(values: Iterable[float], floor: float = 0.25, ceil: float = 4.0,
                limit_lo: float = 1 / 16, limit_hi: float = 16.0) -> tuple[float, float]:
    """A log-symmetric-ish axis range that contains 1 and the values, within sane limits."""
    vals = [float(v) for v in values if finite(v) and float(v) > 0]
    lo = min([floor, *vals]) if vals else floor
    hi = max([ceil, *vals]) if vals else ceil
    lo = max(limit_lo, min(lo, 1 / hi if hi > 1 else lo))
    hi = min(limit_hi, max(hi, 1 / lo if lo < 1 else hi))
    # snap to the tick grid
    lo = max([t for t in RATIO_TICKS if t <= lo] or [RATIO_TICKS[0]])
    hi = min([t for t in RATIO_TICKS if t >= hi] or [RATIO_TICKS[-1]])
    return lo, hi


def duration_ticks(lo: float, hi: float, max_ticks: int = 7) -> list[tuple[float, str]]:
    ticks = [(v, label) for v, label in DURATION_TICKS if lo <= v <= hi]
    while len(ticks) > max_ticks:
        ticks = ticks[::2]
    return ticks


def _nice_step(span: float, target: int = 4) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def linear_ticks(hi: float, target: int = 4) -> list[float]:
    if not finite(hi) or hi <= 0:
        return [0.0, 1.0]
    step = _nice_step(hi, target)
    n = int(math.ceil(hi / step - 1e-9))
    return [i * step for i in range(n + 1)]


# --------------------------------------------------------------------------------------- shapes


def marker(shape: str, x: float, y: float, size: float, colour: str, *, hollow: bool = False) -> str:
    fill = "#ffffff" if hollow else colour
    common = f'fill="{fill}" stroke="{colour}" stroke-width="1.5"'
    s = size
    if shape == "circle":
        return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(s * 0.55)}" {common}/>'
    if shape == "square":
        return f'<rect x="{_f(x - s / 2)}" y="{_f(y - s / 2)}" width="{_f(s)}" height="{_f(s)}" {common}/>'
    if shape == "diamond":
        pts = [(x, y - s * 0.7), (x + s * 0.7, y), (x, y + s * 0.7), (x - s * 0.7, y)]
    elif shape == "triangle_up":
        pts = [(x, y - s * 0.7), (x + s * 0.65, y + s * 0.5), (x - s * 0.65, y + s * 0.5)]
    elif shape == "triangle_down":
        pts = [(x, y + s * 0.7), (x + s * 0.65, y - s * 0.5), (x - s * 0.65, y - s * 0.5)]
    else:
        return ""
    return f'<polygon points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in pts)}" {common}/>'


def _text(x: float, y: float, text: str, *, size: float = 11, anchor: str = "start", colour: str = INK,
          weight: str = "normal", extra: str = "") -> str:
    return (f'<text x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" text-anchor="{anchor}" fill="{colour}" '
            f'font-weight="{weight}"{(" " + extra) if extra else ""}>{esc(text)}</text>')


def _svg(width: float, height: float, body: list[str], title: str, desc: str = "") -> str:
    d = f"<desc>{esc(desc)}</desc>" if desc else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_f(width)} {_f(height)}" '
            f'width="100%" role="img" class="chart" {FONT}><title>{esc(title)}</title>{d}'
            + "".join(body) + "</svg>")


def _truncate(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------------------- forest plot


@dataclass(frozen=True)
class ForestRow:
    label: str           # plain text (escaped here)
    estimate: float
    ci_low: float
    ci_high: float
    verdict: str
    note: str = ""       # plain text shown at the right, e.g. "×0.47 (×0.33 to ×0.65)"
    overall: bool = False


def forest_plot(rows: Sequence[ForestRow], *, title: str, axis_label: str,
                better: str = "lower") -> str:
    """Per-team ratios after/before with 95 % CIs on a log axis, coloured and shaped by verdict.

    Rows without an estimate (insufficient data) are listed with their note and no marker. An
    ``overall`` row is drawn as a wide diamond below a separator.
    """
    label_w, note_w, plot_w = 150.0, 250.0, 330.0
    width = label_w + plot_w + note_w
    row_h, top, bottom = 24.0, 34.0, 58.0
    height = top + row_h * len(rows) + (10 if any(r.overall for r in rows) else 0) + bottom
    values = [v for r in rows for v in (r.estimate, r.ci_low, r.ci_high)]
    lo, hi = ratio_range(values)
    sx = Scale(lo, hi, label_w + 10, label_w + plot_w - 10, log=True)
    body = [f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>']
    y_plot_top, y_plot_bottom = top - 8, height - bottom + 4
    # equivalence band (±25 %) and the no-change line
    body.append(f'<rect x="{_f(sx(0.75))}" y="{_f(y_plot_top)}" width="{_f(sx(1.25) - sx(0.75))}" '
                f'height="{_f(y_plot_bottom - y_plot_top)}" fill="{LIGHT_GREY}" fill-opacity="0.45"/>')
    for t in RATIO_TICKS:
        if lo <= t <= hi:
            x = sx(t)
            body.append(f'<line x1="{_f(x)}" y1="{_f(y_plot_top)}" x2="{_f(x)}" y2="{_f(y_plot_bottom)}" '
                        f'stroke="{INK if t == 1 else LIGHT_GREY}" stroke-width="{1.2 if t == 1 else 0.8}"/>')
            body.append(_text(x, y_plot_bottom + 14, ratio_label(t), size=10, anchor="middle", colour=GREY))
    body.append(_text(sx(lo) + 2, y_plot_bottom + 30, ("← faster / fewer" if better == "lower" else "← less"),
                      size=10, colour=GREY))
    body.append(_text(sx(hi) - 2, y_plot_bottom + 30, ("slower / more →" if better == "lower" else "more →"),
                      size=10, anchor="end", colour=GREY))
    body.append(_text(label_w + plot_w / 2, y_plot_bottom + 46, axis_label, size=10, anchor="middle", colour=GREY))
    body.append(_text(label_w + 10, 16, "no change = ×1; grey band = within ±25 %", size=10, colour=GREY))
    body.append(_text(label_w + plot_w + 8, 16, "ratio (95 % CI), verdict", size=10, colour=GREY))
    y = top
    for r in rows:
        if r.overall:
            body.append(f'<line x1="4" y1="{_f(y - 2)}" x2="{_f(width - 4)}" y2="{_f(y - 2)}" stroke="{GREY}" '
                        f'stroke-width="0.8" stroke-dasharray="3 3"/>')
            y += 10
        colour, shape, _ = VERDICT_STYLE.get(r.verdict, VERDICT_STYLE["inconclusive"])
        cy = y + row_h / 2
        body.append(_text(label_w - 8, cy + 4, _truncate(r.label, 22), size=11, anchor="end",
                          weight="bold" if r.overall else "normal"))
        if finite(r.estimate) and r.verdict != "insufficient_data":
            if finite(r.ci_low) and finite(r.ci_high):
                x1, x2 = sx(sx.clamp(r.ci_low)), sx(sx.clamp(r.ci_high))
                body.append(f'<line x1="{_f(x1)}" y1="{_f(cy)}" x2="{_f(x2)}" y2="{_f(cy)}" stroke="{colour}" '
                            f'stroke-width="2.2"/>')
                for xv, v in ((x1, r.ci_low), (x2, r.ci_high)):
                    if sx.clamp(v) != v:  # clipped: an arrow head says "continues"
                        d = -5 if xv == x1 else 5
                        body.append(f'<polyline points="{_f(xv - d)},{_f(cy - 4)} {_f(xv)},{_f(cy)} '
                                    f'{_f(xv - d)},{_f(cy + 4)}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
                    else:
                        body.append(f'<line x1="{_f(xv)}" y1="{_f(cy - 4)}" x2="{_f(xv)}" y2="{_f(cy + 4)}" '
                                    f'stroke="{colour}" stroke-width="1.5"/>')
            x = sx(sx.clamp(r.estimate))
            if r.overall:
                body.append(marker("diamond", x, cy, 12, colour))
            else:
                body.append(marker(shape, x, cy, 10, colour))
        body.append(_text(label_w + plot_w + 8, cy + 4, _truncate(r.note, 44), size=10.5,
                          colour=INK if r.verdict != "insufficient_data" else GREY))
        y += row_h
    return _svg(width, height, body, title,
                "Each row is a team: the marker is the ratio after/before, the line its 95 % confidence interval.")


# --------------------------------------------------------------------------------------- event study


@dataclass(frozen=True)
class EventPoint:
    month: int
    estimate: float
    ci_low: float
    ci_high: float
    pre: bool            # held-out pre-adoption point (placebo) or post-adoption effect
    n: int = 0


def event_study(points: Sequence[EventPoint], *, title: str, transition_months: float = 1.0) -> str:
    """Organisation-wide effect by month relative to adoption, with 95 % CIs, on a log ratio axis."""
    width, height = 730.0, 300.0
    left, right, top, bottom = 64.0, 16.0, 36.0, 58.0
    pts = [p for p in points if finite(p.estimate)]
    months = [p.month for p in pts] or [-6, 12]
    m_lo, m_hi = min(months + [-1]) - 0.5, max(months + [1]) + 0.5
    sx = Scale(m_lo, m_hi, left, width - right)
    lo, hi = ratio_range([p.estimate for p in pts] + [p.ci_low for p in pts if finite(p.ci_low)]
                         + [p.ci_high for p in pts if finite(p.ci_high)], floor=0.5, ceil=2.0,
                         limit_lo=0.125, limit_hi=8.0)
    sy = Scale(lo, hi, height - bottom, top, log=True)
    body = [f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>']
    # transition window (excluded from the estimate)
    body.append(f'<rect x="{_f(sx(-transition_months))}" y="{_f(top)}" '
                f'width="{_f(sx(transition_months) - sx(-transition_months))}" height="{_f(height - bottom - top)}" '
                f'fill="{LIGHT_GREY}" fill-opacity="0.6"/>')
    body.append(_text(sx(0), top - 6, "adoption", size=10, anchor="middle", colour=GREY))
    for t in RATIO_TICKS:
        if lo <= t <= hi:
            yy = sy(t)
            body.append(f'<line x1="{_f(left)}" y1="{_f(yy)}" x2="{_f(width - right)}" y2="{_f(yy)}" '
                        f'stroke="{INK if t == 1 else LIGHT_GREY}" stroke-width="{1.2 if t == 1 else 0.8}"/>')
            body.append(_text(left - 6, yy + 4, ratio_label(t), size=10, anchor="end", colour=GREY))
    body.append(f'<line x1="{_f(sx(0))}" y1="{_f(top)}" x2="{_f(sx(0))}" y2="{_f(height - bottom)}" stroke="{INK}" '
                f'stroke-width="1" stroke-dasharray="4 3"/>')
    for m in range(int(math.ceil(m_lo)), int(math.floor(m_hi)) + 1):
        if m % 3 == 0 or m in (-1, 1):
            body.append(_text(sx(m), height - bottom + 16, f"{m:+d}" if m else "0", size=10, anchor="middle",
                              colour=GREY))
    body.append(_text((left + width - right) / 2, height - bottom + 34,
                      "months relative to each team's adoption", size=10, anchor="middle", colour=GREY))
    body.append(_text(12, top + (height - bottom - top) / 2, "after ÷ expected (log scale)", size=10,
                      anchor="middle", colour=GREY,
                      extra=f'transform="rotate(-90 12 {_f(top + (height - bottom - top) / 2)})"'))
    pre_c, post_c = OKABE_ITO["orange"], OKABE_ITO["blue"]
    for p in pts:
        colour = pre_c if p.pre else post_c
        x = sx(p.month)
        if finite(p.ci_low) and finite(p.ci_high):
            y1, y2 = sy(sy.clamp(p.ci_low)), sy(sy.clamp(p.ci_high))
            body.append(f'<line x1="{_f(x)}" y1="{_f(y1)}" x2="{_f(x)}" y2="{_f(y2)}" stroke="{colour}" '
                        f'stroke-width="1.8"/>')
            for yv, v in ((y1, p.ci_low), (y2, p.ci_high)):
                if sy.clamp(v) != v:
                    d = 5 if yv == y1 else -5
                    body.append(f'<polyline points="{_f(x - 4)},{_f(yv - d)} {_f(x)},{_f(yv)} {_f(x + 4)},{_f(yv - d)}" '
                                f'fill="none" stroke="{colour}" stroke-width="1.5"/>')
                else:
                    body.append(f'<line x1="{_f(x - 4)}" y1="{_f(yv)}" x2="{_f(x + 4)}" y2="{_f(yv)}" '
                                f'stroke="{colour}" stroke-width="1.5"/>')
        body.append(marker("circle" if p.pre else "square", x, sy(sy.clamp(p.estimate)), 9, colour, hollow=p.pre))
    # legend
    lx = left + 8
    body.append(marker("circle", lx, 14, 9, pre_c, hollow=True))
    body.append(_text(lx + 10, 18, "before adoption (check: should sit near ×1)", size=10))
    body.append(marker("square", lx + 300, 14, 9, post_c))
    body.append(_text(lx + 310, 18, "after adoption (the effect)", size=10))
    body.append(f'<rect x="{_f(lx + 480)}" y="8" width="14" height="12" fill="{LIGHT_GREY}"/>')
    body.append(_text(lx + 498, 18, "transition (excluded)", size=10))
    return _svg(width, height, body, title,
                "Markers are the organisation-wide ratio of actual to expected typical time to resolve, "
                "by month since adoption; vertical lines are 95 % confidence intervals.")


# --------------------------------------------------------------------------------------- time series


def month_add(d: date, k: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 + k, 12)
    return date(y, m + 1, 1)


def _month_axis(months: Sequence[date], sx: Scale, y: float, body: list[str], every: int,
                size: float = 10.5) -> None:
    for i, m in enumerate(months):
        if (m.month - 1) % every == 0:
            label = m.strftime("%b %Y") if every >= 3 else m.strftime("%b %y")
            body.append(_text(sx(i), y, label, size=size, anchor="middle", colour=GREY))
            body.append(f'<line x1="{_f(sx(i))}" y1="{_f(y - 12)}" x2="{_f(sx(i))}" y2="{_f(y - 9)}" stroke="{GREY}"/>')


def _adoption_marks(months: Sequence[date], adopted_on: date | None, transition_days: int, sx: Scale,
                    top: float, bottom: float, body: list[str], label: bool = True) -> None:
    if adopted_on is None or not months:
        return

    def pos(d: date) -> float:  # fractional month index, with month i drawn at its middle
        first = months[0]
        k = (d.year - first.year) * 12 + d.month - first.month
        start = month_add(first, k)
        days = (month_add(start, 1) - start).days
        return k + (d - start).days / days - 0.5

    a = pos(adopted_on)
    lo_i, hi_i = -0.5, len(months) - 0.5
    if a < lo_i or a > hi_i:
        return
    t0 = max(lo_i, pos(adopted_on - timedelta(days=transition_days)))
    t1 = min(hi_i, pos(adopted_on + timedelta(days=transition_days)))
    body.append(f'<rect x="{_f(sx(t0))}" y="{_f(top)}" width="{_f(max(0.0, sx(t1) - sx(t0)))}" '
                f'height="{_f(bottom - top)}" fill="{LIGHT_GREY}" fill-opacity="0.6"/>')
    body.append(f'<line x1="{_f(sx(a))}" y1="{_f(top)}" x2="{_f(sx(a))}" y2="{_f(bottom)}" stroke="{INK}" '
                f'stroke-width="1" stroke-dasharray="4 3"/>')
    if label:
        body.append(_text(sx(a), top - 4, "adopted", size=9.5, anchor="middle", colour=GREY))


@dataclass(frozen=True)
class MonthStat:
    month: date
    median: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p90: float | None = None
    n: int = 0


def monthly_bands(stats: Sequence[MonthStat], *, title: str, adopted_on: date | None = None,
                  transition_days: int = 30) -> str:
    """Monthly time to resolve: median line with its 95 % CI as a band, p90 as a dashed line."""
    width, height = 730.0, 250.0
    left, right, top, bottom = 64.0, 14.0, 34.0, 40.0
    if not stats:
        return _empty(width, 80, title, "no incidents")
    months = _month_range([s.month for s in stats])
    idx = {m: i for i, m in enumerate(months)}
    vals = [v for s in stats for v in (s.median, s.ci_low, s.ci_high, s.p90) if finite(v) and v > 0]
    lo = max(10.0, min(vals) / 1.3) if vals else 60.0
    hi = max(vals) * 1.3 if vals else 86400.0
    ticks = duration_ticks(lo, hi)
    if ticks:
        lo, hi = min(lo, ticks[0][0]), max(hi, ticks[-1][0])
    sx = Scale(-0.5, len(months) - 0.5, left, width - right)
    sy = Scale(lo, hi, height - bottom, top, log=True)
    body = [f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>']
    for v, label in ticks:
        body.append(f'<line x1="{_f(left)}" y1="{_f(sy(v))}" x2="{_f(width - right)}" y2="{_f(sy(v))}" '
                    f'stroke="{LIGHT_GREY}" stroke-width="0.8"/>')
        body.append(_text(left - 6, sy(v) + 4, label, size=10, anchor="end", colour=GREY))
    _adoption_marks(months, adopted_on, transition_days, sx, top, height - bottom, body)
    # CI band of the median, drawn per run of consecutive months with a CI
    blue = OKABE_ITO["blue"]
    runs: list[list[tuple[int, float, float]]] = [[]]
    for s in sorted(stats, key=lambda s: s.month):
        if finite(s.ci_low) and finite(s.ci_high) and finite(s.median):
            a, b = sorted((float(s.ci_low), float(s.ci_high)))
            if runs[-1] and runs[-1][-1][0] != idx[s.month] - 1:
                runs.append([])
            runs[-1].append((idx[s.month], a, b))
        elif runs[-1]:
            runs.append([])
    for run in runs:
        if not run:
            continue
        if len(run) == 1:
            i, a, b = run[0]
            body.append(f'<rect x="{_f(sx(i - 0.3))}" y="{_f(sy(b))}" width="{_f(sx(i + 0.3) - sx(i - 0.3))}" '
                        f'height="{_f(sy(a) - sy(b))}" fill="{OKABE_ITO["sky_blue"]}" fill-opacity="0.35"/>')
            continue
        upper = " ".join(f"{_f(sx(i))},{_f(sy(b))}" for i, _, b in run)
        lower = " ".join(f"{_f(sx(i))},{_f(sy(a))}" for i, a, _ in reversed(run))
        body.append(f'<polygon points="{upper} {lower}" fill="{OKABE_ITO["sky_blue"]}" fill-opacity="0.35" '
                    f'stroke="none"/>')
    body.append(_series_path([(idx[s.month], s.median) for s in stats], sx, sy, blue, 2.2))
    for s in stats:
        if finite(s.median):
            body.append(marker("circle", sx(idx[s.month]), sy(float(s.median)), 5, blue))
    orange = OKABE_ITO["vermillion"]
    body.append(_series_path([(idx[s.month], s.p90) for s in stats], sx, sy, orange, 1.6, dash="6 4"))
    for s in stats:
        if finite(s.p90):
            body.append(marker("triangle_up", sx(idx[s.month]), sy(float(s.p90)), 6, orange))
    _month_axis(months, sx, height - bottom + 16, body, 3 if len(months) > 12 else 1)
    # legend
    body.append(f'<line x1="{_f(left + 4)}" y1="12" x2="{_f(left + 26)}" y2="12" stroke="{blue}" stroke-width="2.2"/>')
    body.append(_text(left + 30, 16, "median", size=10))
    body.append(f'<rect x="{_f(left + 82)}" y="6" width="20" height="12" fill="{OKABE_ITO["sky_blue"]}" '
                f'fill-opacity="0.35"/>')
    body.append(_text(left + 106, 16, "95 % CI of the median", size=10))
    body.append(f'<line x1="{_f(left + 236)}" y1="12" x2="{_f(left + 258)}" y2="12" stroke="{orange}" '
                f'stroke-width="1.6" stroke-dasharray="6 4"/>')
    body.append(_text(left + 262, 16, "p90 (months with ≥ 20 incidents)", size=10))
    body.append(_text(width - right, 16, "log scale", size=10, anchor="end", colour=GREY))
    return _svg(width, height, body, title,
                "Monthly median time to resolve with its 95 % confidence band, and the 90th percentile.")


def _series_path(points: Sequence[tuple[int, float | None]], sx: Scale, sy: Scale, colour: str, width: float,
                 dash: str = "") -> str:
    """A polyline that breaks at gaps (missing values or missing months)."""
    segs: list[list[str]] = [[]]
    last = None
    for i, v in sorted(points, key=lambda p: p[0]):
        if not finite(v) or (sy.log and float(v) <= 0):
            segs.append([])
            last = None
            continue
        if last is not None and i != last + 1:
            segs.append([])
        segs[-1].append(f"{_f(sx(i))},{_f(sy(sy.clamp(float(v))))}")
        last = i
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return "".join(f'<polyline points="{" ".join(s)}" fill="none" stroke="{colour}" stroke-width="{_f(width)}"'
                   f'{dash_attr} stroke-linejoin="round"/>' for s in segs if len(s) >= 2)


def _month_range(months: Iterable[date]) -> list[date]:
    ms = sorted({date(m.year, m.month, 1) for m in months})
    if not ms:
        return []
    out, m = [], ms[0]
    while m <= ms[-1]:
        out.append(m)
        m = month_add(m, 1)
    return out


def _empty(width: float, height: float, title: str, message: str) -> str:
    return _svg(width, height, [f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>',
                                _text(width / 2, height / 2 + 4, message, size=12, anchor="middle", colour=GREY)],
                title)


def small_series(points: Sequence[tuple[date, float | None]], *, title: str, y_format: Callable[[float], str],
                 adopted_on: date | None = None, transition_days: int = 30, y_max: float | None = None,
                 colour: str = OKABE_ITO["blue"], bars: bool = False, note: str = "",
                 y_cap: float | None = None) -> str:
    """A small monthly chart on a linear axis from zero: a line with markers, or bars for counts."""
    width, height = 300.0, 175.0
    left, right, top, bottom = 50.0, 8.0, 30.0, 32.0
    pts = [(date(d.year, d.month, 1), v) for d, v in points]
    if not pts or not any(finite(v) for _, v in pts):
        return _empty(width, height, title, "no data")
    months = _month_range([d for d, _ in pts])
    idx = {m: i for i, m in enumerate(months)}
    hi = max(float(v) for _, v in pts if finite(v))
    hi = y_max if y_max is not None else (hi * 1.15 if hi > 0 else 1.0)
    if y_cap is not None:
        hi = min(hi, y_cap)
    ticks = linear_ticks(hi, 3)
    hi = max(hi, ticks[-1])
    if y_cap is not None and hi > y_cap:
        ticks, hi = [t for t in ticks if t <= y_cap] + ([y_cap] if y_cap not in ticks else []), y_cap
    sx = Scale(-0.5, len(months) - 0.5, left, width - right)
    sy = Scale(0.0, hi, height - bottom, top)
    body = [f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>']
    body.append(_text(2, 15, title, size=12, weight="bold"))
    if note:
        body.append(_text(width - right, 28, note, size=10, anchor="end", colour=GREY))
    for t in ticks:
        body.append(f'<line x1="{_f(left)}" y1="{_f(sy(t))}" x2="{_f(width - right)}" y2="{_f(sy(t))}" '
                    f'stroke="{LIGHT_GREY}" stroke-width="0.8"/>')
        body.append(_text(left - 5, sy(t) + 4, y_format(t), size=10.5, anchor="end", colour=GREY))
    _adoption_marks(months, adopted_on, transition_days, sx, top, height - bottom, body, label=False)
    if bars:
        bw = max(1.0, (sx(1) - sx(0)) * 0.7)
        for d, v in pts:
            if finite(v):
                x = sx(idx[d])
                body.append(f'<rect x="{_f(x - bw / 2)}" y="{_f(sy(float(v)))}" width="{_f(bw)}" '
                            f'height="{_f(sy(0) - sy(float(v)))}" fill="{colour}"/>')
    else:
        body.append(_series_path([(idx[d], v) for d, v in pts], sx, sy, colour, 1.8))
        for d, v in pts:
            if finite(v):
                body.append(marker("circle", sx(idx[d]), sy(float(v)), 4.5, colour))
    _month_axis(months, sx, height - bottom + 16, body, 6 if len(months) > 12 else 3, size=10.5)
    return _svg(width, height, body, title)
