"""Numbers for people: every value carries its unit ("47 min", "×0.74 (95 % CI ×0.56 to ×0.95)",
"12 incidents"). Plain text out; render.py escapes it."""

from __future__ import annotations

import math
from datetime import date, datetime

import pandas as pd

DASH = "—"


def missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: '45 s', '42 min', '3.5 h', '2.1 d'; an em dash when unknown."""
    if missing(seconds):
        return DASH
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} d"


def fmt_ratio(r: float | None) -> str:
    if missing(r):
        return DASH
    r = float(r)
    if math.isinf(r):
        return "×∞"
    return f"×{r:.2f}" if r < 10 else f"×{r:.0f}"


def fmt_ratio_ci(est, lo, hi) -> str:
    """'×0.74 (95 % CI ×0.56 to ×0.95)'."""
    if missing(est):
        return DASH
    if missing(lo) or missing(hi):
        return f"{fmt_ratio(est)} (no CI)"
    return f"{fmt_ratio(est)} (95 % CI {fmt_ratio(lo)} to {fmt_ratio(hi)})"


def fmt_ci_range(lo, hi) -> str:
    return f"{fmt_ratio(lo)} to {fmt_ratio(hi)}"


def fmt_change(r, noun_less: str = "shorter", noun_more: str = "longer") -> str:
    """A ratio as a percentage change: ×0.75 -> '25 % shorter', ×1.3 -> '30 % longer'."""
    if missing(r):
        return DASH
    r = float(r)
    if math.isinf(r):
        return f"infinitely {noun_more}"
    if r < 1:
        return f"{(1 - r) * 100:.0f} % {noun_less}"
    if r > 1:
        return f"{(r - 1) * 100:.0f} % {noun_more}"
    return "unchanged"


def fmt_pct(p, digits: int = 0) -> str:
    if missing(p):
        return DASH
    return f"{float(p) * 100:.{digits}f} %"


def fmt_count(n, singular: str, plural: str | None = None) -> str:
    if missing(n):
        return DASH
    n = int(n)
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def fmt_number(x, digits: int = 1, unit: str = "") -> str:
    if missing(x):
        return DASH
    text = f"{float(x):,.{digits}f}"
    return f"{text} {unit}".strip()


def fmt_rate(r, unit: str = "incidents") -> str:
    """'14.2 incidents / 30 days'."""
    return DASH if missing(r) else f"{float(r):.1f} {unit} / 30 days"


def fmt_date(d) -> str:
    if missing(d):
        return DASH
    if isinstance(d, (datetime, pd.Timestamp)):
        return pd.Timestamp(d).strftime("%Y-%m-%d")
    if isinstance(d, date):
        return d.isoformat()
    return str(d)[:10]


def fmt_datetime(dt) -> str:
    """'2026-11-25 20:07 UTC'."""
    if missing(dt):
        return DASH
    ts = pd.Timestamp(dt)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def fmt_p(p) -> str:
    if missing(p):
        return DASH
    p = float(p)
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def fmt_mde(m) -> str:
    """The minimum detectable effect as a reduction: '38 %'."""
    return DASH if missing(m) else f"{float(m) * 100:.0f} %"


def fmt_bytes(b) -> str:
    if missing(b):
        return DASH
    b = float(b)
    for unit in ("B", "kB", "MB", "GB"):
        if b < 1000 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} GB"
