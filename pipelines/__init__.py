"""incident-metrics: per-team incident baselines and before/after comparisons on Dagster + DuckDB."""
