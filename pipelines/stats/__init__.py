"""The statistics of incident metrics: pure functions, no I/O, no Dagster (docs/statistics.md).

- ``descriptive``: constants, conventions and descriptive statistics (medians, geometric means, Kaplan-Meier);
- ``comparisons``: two-arm comparisons (after vs before) with confidence intervals, MDEs and verdicts;
- ``tables``: the per-team before/after and per-period tables the statistics marts hold;
- ``org``: the organisation-wide staggered difference-in-differences and its event study.

Everything public is importable from here (``from pipelines import stats``; ``stats.compare_arms``).
"""

from pipelines.stats.comparisons import (  # noqa: F401
    benjamini_hochberg,
    bootstrap_medians,
    compare_arms,
    compare_counts,
    compare_proportions,
    compare_rates,
    mann_whitney,
)
from pipelines.stats.descriptive import (  # noqa: F401
    DAYS_PER_MONTH,
    DEFAULT_AFTER_DAYS,
    DEFAULT_BEFORE_DAYS,
    DEFAULT_EQUIVALENCE_MARGIN,
    DEFAULT_LOW_POWER_N,
    DEFAULT_MDE_LOW_POWER,
    DEFAULT_METRICS,
    DEFAULT_MIN_N,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    DEFAULT_TRANSITION_DAYS,
    DURATION_METRICS,
    KM_CENSORED_SHARE,
    METRIC_DIRECTION,
    MIN_N_P90,
    MIN_SECONDS,
    POWER,
    RATE_PER_DAYS,
    SECONDS_PER_DAY,
    VARIANTS,
    VERDICTS,
    decide_verdict,
    kaplan_meier,
    mde_closed_form,
    median_ci_ranks,
    poisson_ci,
    rate_ci,
    summarize_durations,
    team_seed,
    wilson_ci,
)
from pipelines.stats.org import (  # noqa: F401
    org_effect,
    org_rate_effect,
)
from pipelines.stats.tables import (  # noqa: F401
    default_as_of,
    period_summaries,
    prepare_incidents,
    team_comparisons,
)
