"""Great Expectations suites on the staging tables: the second line of data quality.

The first line is ``pipelines/records.py``: every record is judged before it enters ``raw`` and the
bad ones go to ``quarantine.rejected_records``. These suites check the typed staging tables again,
so whatever slipped past (or was written by hand) cannot reach the marts unnoticed. Each staging
table has a *blocking* suite (a failure would make the marts wrong: Dagster then skips the marts and
the report in the same run) and, where useful, a *warning* suite (worth a look, but the marts stay
right). ``assets/checks.py`` wires them as Dagster asset checks; docs/data-quality.md lists the rules.

Everything here is plain Python: :func:`build_suite` is a pure builder, :func:`validate_df` runs a
suite on a pandas DataFrame in an ephemeral GX context (no ``gx/`` folder, nothing on disk), and
:func:`summarize` turns the result into counts and example ids. Tests call them without Dagster.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.records import EARLIEST_PLAUSIBLE, FUTURE_TOLERANCE
from pipelines.warehouse import table_references

if TYPE_CHECKING:
    import great_expectations as gx


def _gx():
    """great_expectations, imported on first use: it takes seconds to import, and loading the
    Dagster definitions (UI, CLI, schedule) must not pay for it."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics from a pipeline
    import great_expectations

    return great_expectations


def _gxe():
    return _gx().expectations


BLOCKING = "blocking"
WARNING = "warning"
MAX_EXAMPLES = 5

# Environment names expected besides the production one (INCIDENT_METRICS_PRODUCTION_ENVIRONMENT).
NON_PRODUCTION_ENVIRONMENTS = ("staging", "development", "test", "qa", "preview", "sandbox")


# ------------------------------------------------------------------------------------ the rules


@dataclass(frozen=True)
class Settings:
    """What the rules depend on besides the data."""

    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    production_environment: str = "production"

    @property
    def latest_plausible(self) -> pd.Timestamp:
        return pd.Timestamp(self.now + FUTURE_TOLERANCE)

    @property
    def allowed_environments(self) -> list[str]:
        return sorted({self.production_environment, *NON_PRODUCTION_ENVIRONMENTS})


@dataclass(frozen=True)
class Rule:
    name: str  # shown in Dagster: what must hold
    severity: str  # BLOCKING or WARNING
    build: Callable[[Settings], gx.expectations.Expectation]


@dataclass(frozen=True)
class TableQuality:
    table: str  # staging table
    id_column: str  # the id shown as an example of a failing row
    frame_sql: str  # the rows to check: the table, plus columns joined from other tables
    rules: tuple[Rule, ...]

    @property
    def reads(self) -> list[tuple[str, str]]:
        """The other tables ``frame_sql`` reads, found in its text (as the SQL assets find theirs):
        the check's upstream assets besides its own table."""
        return table_references(self.frame_sql, exclude=("staging", self.table))

    def rules_of(self, severity: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.severity == severity)


def not_null(column: str, severity: str = BLOCKING) -> Rule:
    return Rule(f"{column} is not null", severity, lambda s: _gxe().ExpectColumnValuesToNotBeNull(column=column))


def unique(column: str) -> Rule:
    return Rule(f"{column} is unique", BLOCKING, lambda s: _gxe().ExpectColumnValuesToBeUnique(column=column))


def plausible(column: str) -> Rule:
    return Rule(f"{column} is not before {EARLIEST_PLAUSIBLE:%Y} and not in the future", BLOCKING,
                lambda s: _gxe().ExpectColumnValuesToBeBetween(
                    column=column, min_value=pd.Timestamp(EARLIEST_PLAUSIBLE), max_value=s.latest_plausible))


def parsed() -> Rule:
    return Rule("every value parsed (invalid_fields is null)", BLOCKING,
                lambda s: _gxe().ExpectColumnValuesToBeNull(column="invalid_fields"))


def at_or_after(later: str, earlier: str, severity: str = BLOCKING) -> Rule:
    return Rule(f"{later} is at or after {earlier}", severity,
                lambda s: _gxe().ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing"))


def in_set(column: str, values: Sequence[str] | Callable[[Settings], Sequence[str]], severity: str,
            label: str | None = None) -> Rule:
    def build(s: Settings) -> gx.expectations.Expectation:
        allowed = values(s) if callable(values) else values
        return _gxe().ExpectColumnValuesToBeInSet(column=column, value_set=list(allowed))

    return Rule(label or f"{column} is one of {', '.join(values) if not callable(values) else 'the allowed values'}",
                severity, build)


def is_true(column: str, label: str, severity: str) -> Rule:
    return Rule(label, severity, lambda s: _gxe().ExpectColumnValuesToBeInSet(column=column, value_set=[True]))


def unique_together(columns: list[str]) -> Rule:
    return Rule(f"({', '.join(columns)}) is unique", BLOCKING,
                lambda s: _gxe().ExpectCompoundColumnsToBeUnique(column_list=columns))


def known_service(source: str, alias: str) -> str:
    """SQL: the service ``<alias>.service_id`` of the paging source ``source`` is in the ownership file."""
    return ("exists (select 1 from staging.stg_ownership__service_owners as o "
            f"where o.source = '{source}' and o.service_id = {alias}.service_id)")

# The ownership file's tables; each connector has the rules of its own staging tables
# (pipelines/connectors/<name>/quality.py).
OWNERSHIP_TABLES: tuple[TableQuality, ...] = (
    TableQuality(
        "stg_ownership__teams", "team_key",
        "select team_key, time_zone, business_hours_start, business_hours_end from staging.stg_ownership__teams",
        (not_null("team_key"), unique("team_key"), not_null("time_zone"),
         not_null("business_hours_start"), not_null("business_hours_end")),
    ),
    TableQuality(
        "stg_ownership__service_owners", "service_id",
        """
        select o.source, o.service_id, o.team_key, o.valid_from, o.valid_to,
               o.team_key is null  -- listed as unowned on purpose
               or exists (select 1 from staging.stg_ownership__teams as t where t.team_key = o.team_key) as team_known
        from staging.stg_ownership__service_owners as o
        order by o.source, o.service_id, o.valid_from
        """,
        (
            not_null("source"), not_null("service_id"), unique_together(["source", "service_id", "valid_from"]),
            Rule("valid_to is after valid_from", BLOCKING,
                 lambda s: _gxe().ExpectColumnPairValuesAToBeGreaterThanB(
                     column_A="valid_to", column_B="valid_from", or_equal=False, ignore_row_if="either_value_is_missing")),
            is_true("team_known", "the owning team is defined in the ownership file", BLOCKING),
        ),
    ),
    TableQuality(
        "stg_ownership__service_repos", "service_id",
        "select source, service_id, repo_source, repo from staging.stg_ownership__service_repos "
        "order by source, service_id, repo_source, repo",
        (not_null("source"), not_null("service_id"), not_null("repo_source"), not_null("repo"),
         unique_together(["source", "service_id", "repo_source", "repo"])),
    ),
)


def tables() -> dict[str, TableQuality]:
    """The rules of every staging table: the ownership file's (here) and each connector's, from the
    registry (imported here, when first asked: the connectors' rules are built with this module)."""
    from pipelines.connectors import CONNECTORS

    return {t.table: t for t in (*OWNERSHIP_TABLES, *(t for c in CONNECTORS for t in c.quality))}


# ------------------------------------------------------------------------------------ GX plumbing


def build_suite(table: str, severity: str | None = None, settings: Settings | None = None) -> gx.ExpectationSuite:
    """The GX suite of one staging table: the rules of one severity, or all of them (``None``).

    A pure builder: nothing is registered anywhere. Each expectation carries its rule name and
    severity in ``meta`` (and GX's own ``severity`` is ``warning`` for the warnings).
    """
    gx = _gx()
    settings = settings or Settings()
    spec = tables()[table]
    expectations = []
    for rule in (spec.rules if severity is None else spec.rules_of(severity)):
        expectation = rule.build(settings)
        expectation.meta = {"rule": rule.name, "severity": rule.severity}
        if rule.severity == WARNING:
            expectation.severity = "warning"
        expectations.append(expectation)
    return gx.ExpectationSuite(name=f"{table}__{severity or 'all'}", expectations=expectations)


def validate_df(df: pd.DataFrame, suite: gx.ExpectationSuite):
    """Run ``suite`` on ``df`` in an ephemeral GX context; an ``ExpectationSuiteValidationResult``.

    The result format is COMPLETE so that the failing rows' positions come back (for examples).
    """
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Ephemeral: stores in memory, no docs site, no progress bars on the terminal, no usage statistics.
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               progress_bars=ProgressBarsConfig(globally=False), analytics_enabled=False)
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch = (context.data_sources.add_pandas(name="pandas")
             .add_dataframe_asset(name=suite.name)
             .add_batch_definition_whole_dataframe(name="whole"))
    suite = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=list(suite.expectations)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}__validation", data=batch, suite=suite))
    with warnings.catch_warnings():
        # GX's pair expectations read tz-aware columns through Series.values (pandas 3 deprecates it)
        warnings.filterwarnings("ignore", message=".*Series.values returning an ndarray.*")
        return definition.run(batch_parameters={"dataframe": df.reset_index(drop=True)},
                              result_format={"result_format": "COMPLETE"})


@dataclass
class Failure:
    rule: str
    expectation: str
    failing_rows: int
    examples: list[str]
    error: str | None = None


@dataclass
class Outcome:
    table: str
    severity: str
    rows: int
    evaluated: int
    failures: list[Failure]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failing_rows(self) -> int:
        return sum(f.failing_rows for f in self.failures)

    def description(self) -> str:
        if self.passed:
            rules = f"{self.evaluated} {self.severity} rule holds" if self.evaluated == 1 else \
                f"{self.evaluated} {self.severity} rules hold"
            return f"{rules} on {_rows(self.rows)}"
        parts = [f"{f.rule} ({f.error})" if f.error else
                 f"{f.rule}: {_rows(f.failing_rows)}, e.g. {', '.join(f.examples) or '-'}" for f in self.failures]
        return f"{len(self.failures)} of {self.evaluated} {self.severity} rules failed: " + "; ".join(parts)

    def markdown(self) -> str:
        if self.passed:
            return "_every rule holds_"
        lines = ["| rule | failing rows | examples |", "|---|---|---|"]
        for f in self.failures:
            examples = f.error or ", ".join(f.examples)
            lines.append(f"| {_md(f.rule)} | {f.failing_rows} | {_md(examples)} |")
        return "\n".join(lines)

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster's metadata (the caller wraps the markdown and JSON)."""
        return {
            "rows_checked": self.rows,
            "rules_evaluated": self.evaluated,
            "rules_failed": len(self.failures),
            "failing_rows": self.failing_rows,
            "failures": [
                {"rule": f.rule, "expectation": f.expectation, "failing_rows": f.failing_rows,
                 "examples": f.examples, **({"error": f.error} if f.error else {})}
                for f in self.failures
            ],
        }


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summarize(result, df: pd.DataFrame, table: str, severity: str, id_column: str,
              max_examples: int = MAX_EXAMPLES) -> Outcome:
    """Counts of failing rows and up to ``max_examples`` example ids for each failed expectation of
    ``severity`` in ``result`` (a suite may hold both severities)."""
    df = df.reset_index(drop=True)
    failures = []
    evaluated = 0
    for r in result.results:
        config = r.expectation_config
        meta = config.meta or {}
        if meta.get("severity", severity) != severity:
            continue
        evaluated += 1
        if r.success:
            continue
        rule = meta.get("rule") or config.type
        info = r.exception_info or {}
        raised = info.get("raised_exception") if isinstance(info, dict) else False
        if raised:
            failures.append(Failure(rule, config.type, 0, [], error=str(info.get("exception_message"))[:300]))
            continue
        res = r.result or {}
        index = [i for i in (res.get("unexpected_index_list") or []) if isinstance(i, int) and 0 <= i < len(df)]
        count = int(res.get("unexpected_count") or len(index))
        examples: list[str] = []
        for i in index:
            value = df.at[i, id_column] if id_column in df.columns else i
            text = "null" if value is None or (isinstance(value, float) and value != value) else str(value)
            if text not in examples:
                examples.append(text)
            if len(examples) >= max_examples:
                break
        failures.append(Failure(rule, config.type, count, examples))
    return Outcome(table, severity, len(df), evaluated, failures)


def check_frame(df: pd.DataFrame, table: str, severity: str, settings: Settings | None = None) -> Outcome:
    """Build the suite of one severity, run it on ``df`` and summarize (an asset check without Dagster)."""
    spec = tables()[table]
    if not spec.rules_of(severity):
        return Outcome(table, severity, len(df), 0, [])
    result = validate_df(df, build_suite(table, severity, settings))
    return summarize(result, df, table, severity, spec.id_column)


def check_frame_all(df: pd.DataFrame, table: str, settings: Settings | None = None) -> dict[str, Outcome]:
    """Both severities with one validation run: {BLOCKING: Outcome, WARNING: Outcome}."""
    spec = tables()[table]
    result = validate_df(df, build_suite(table, None, settings))
    return {severity: summarize(result, df, table, severity, spec.id_column) for severity in (BLOCKING, WARNING)}


def load_frame(con, table: str) -> pd.DataFrame:
    """The rows the suites of ``table`` check, from the warehouse."""
    return con.execute(tables()[table].frame_sql).df()


def check_table(con, table: str, severity: str, settings: Settings | None = None) -> Outcome:
    return check_frame(load_frame(con, table), table, severity, settings)
