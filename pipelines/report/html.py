"""HTML building blocks of the report: escaping, tagged numbers, verdict badges, tables, figures.

Every string that came from an API or the ownership file goes through :func:`esc` before it
reaches the page; :func:`num` tags a number with ``data-summary`` so tests can compare it with the marts.
"""

from __future__ import annotations

import html
from typing import Iterable, Sequence

from pipelines.report.format import fmt_ratio_ci

VERDICT_TEXT = {
    "improved": "improved",
    "worsened": "worsened",
    "equivalent": "no meaningful change",
    "inconclusive": "cannot tell yet",
    "insufficient_data": "insufficient data",
}

VERDICT_SYMBOL = {"improved": "▼", "worsened": "▲", "equivalent": "◆", "inconclusive": "●",
                  "insufficient_data": "○"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def num(text: str, key: str | None = None, value: object = None) -> str:
    """A number with its unit that never wraps; tagged with ``data-summary`` for the summary numbers."""
    attrs = ""
    if key is not None:
        attrs += f' data-summary="{esc(key)}"'
        if value is not None:
            v = value if isinstance(value, str) else repr(float(value)) if isinstance(value, float) else str(value)
            attrs += f' data-value="{esc(v)}"'
    return f'<span class="num"{attrs}>{esc(text)}</span>'


def ratio_ci(est, lo, hi) -> str:
    """'×0.74 (95 % CI ×0.56 to ×0.95)' that may wrap before the parenthesis only."""
    text = fmt_ratio_ci(est, lo, hi)
    head, sep, tail = text.partition(" (")
    return num(head) + (" " + num("(" + tail) if sep else "")


def verdict_badge(verdict: str | None, low_power: bool = False, metric: str | None = None) -> str:
    v = verdict if verdict in VERDICT_TEXT else "inconclusive"
    text = VERDICT_TEXT[v]
    if metric == "time_to_resolve" and v == "equivalent":
        text = "no meaningful change (within ±25 %)"
    lp = ' <span class="lowpower">low power</span>' if low_power and v in ("inconclusive", "equivalent") else ""
    return f'<span class="verdict v-{v}">{VERDICT_SYMBOL[v]} {esc(text)}</span>{lp}'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "", numeric: Sequence[int] = (),
          caption: str = "") -> str:
    """An HTML table; cells are already HTML (escape before calling)."""
    right = ' class="r"'
    head = "".join(f'<th{right if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(f'<td{right if i in numeric else ""}>{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>')
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<table class="{esc(cls)}">{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def figure(svg: str, caption: str, cls: str = "") -> str:
    return f'<figure class="{esc(cls)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>'
