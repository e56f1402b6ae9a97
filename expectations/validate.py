"""Run the suites, write failing rows to consent.dq_rejections, build Data Docs and the DPO summary.

1. The GX checkpoint validates every staging model (each rule a COUNT pushed down to PostgreSQL)
   and rebuilds Data Docs under CONSENT_HOME/reports/data_docs/.
2. In one transaction: delete the stage='validate' rows of every staged batch, then one
   INSERT ... SELECT per failing rule copies its rows (lineage, record id, rule, severity, a
   reason that never quotes the value) into consent.dq_rejections. Re-running replaces them.
3. consent.dq_summary (a view) and CONSENT_HOME/reports/dq_summary.html give the DPO counts and
   example record ids per source and rule.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from expectations.rules import MODELS, RULES, Rule
from expectations.suites import SITE, data_docs_dir, get_context

SUMMARY_VIEW_DDL = """
create or replace view consent.dq_summary as
select source, stage, rule, severity, count(*) as rows,
       (array_agg(record_id order by batch_id, file_name, line_number)
            filter (where record_id is not null))[1:5] as example_record_ids,
       min(batch_id) as first_batch_id, max(batch_id) as last_batch_id
from consent.dq_rejections
group by source, stage, rule, severity
"""
SUMMARY_COMMENT = (
    "comment on view consent.dq_summary is 'Data-quality summary for the DPO: rejected or "
    "suspicious rows per source, stage and rule, with up to 5 example record ids (no PII).'"
)


@dataclass
class RuleOutcome:
    rule: Rule
    failing: int
    error: str | None = None


@dataclass
class ValidationReport:
    outcomes: list[RuleOutcome] = field(default_factory=list)
    data_docs_index: Path | None = None
    summary_html: Path | None = None
    rows_written: dict[tuple[str, str, str], int] = field(default_factory=dict)
    blocking_failures: list[str] = field(default_factory=list)  # in the catalog in force
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [f"{o.rule.model}/{o.rule.code}: {o.error}" for o in self.outcomes if o.error]

    def counts_by_source(self, source: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (src, rule, severity), n in self.rows_written.items():
            if src == source:
                counts[f"{rule} ({severity})"] = counts.get(f"{rule} ({severity})", 0) + n
        return counts


def _staged_relations(conn: psycopg.Connection) -> set[str]:
    """The staging models built so far: tables (the per-batch feeds) and views (the catalog)."""
    rows = conn.execute(
        "select table_name from information_schema.tables where table_schema = 'staging'"
    ).fetchall()
    return {r[0] for r in rows}


def run_suites(home: Path, reports_dir: Path, database_url: str) -> list[RuleOutcome]:
    """Validate every staged view with its suite (GX checkpoint), then build Data Docs once: the
    pages of this run's validation results and suites, and the index."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    context, checkpoint = get_context(home, reports_dir, database_url)
    result = checkpoint.run()
    pages = [
        *result.run_results,
        *(ExpectationSuiteIdentifier(name=v.suite_name) for v in result.run_results.values()),
    ]
    context.build_data_docs(site_names=[SITE], resource_identifiers=pages)
    by_key = {(r.model, r.code, r.field): r for r in RULES}
    outcomes: list[RuleOutcome] = []
    for validation in result.run_results.values():
        for res in validation.results:
            meta = res.expectation_config.meta or {}
            model = validation.suite_name.removesuffix(".forms")
            rule = by_key[(model, meta["rule"], meta["field"])]
            error = None
            if res.exception_info and res.exception_info.get("raised_exception"):
                error = str(res.exception_info.get("exception_message")).splitlines()[0]
            else:
                for info in res.exception_info.values() if res.exception_info else ():
                    if isinstance(info, dict) and info.get("raised_exception"):
                        error = str(info.get("exception_message")).splitlines()[0]
            observed = (res.result or {}).get("observed_value")
            outcomes.append(RuleOutcome(rule, int(observed or 0), error))
    return outcomes


def write_rejections(conn: psycopg.Connection, outcomes: list[RuleOutcome]) -> dict:
    """Replace the stage='validate' rows of every staged batch with this run's findings."""
    written: dict[tuple[str, str, str], int] = {}
    with conn.transaction():
        # every staged batch (the views span all loaded batches) is validated on each run:
        # drop the previous validation's rows of all of them, in this same transaction
        conn.execute("delete from consent.dq_rejections where stage = 'validate'")
        for outcome in outcomes:
            if outcome.failing <= 0 or outcome.error:
                continue
            rule = outcome.rule
            query = rule.query_for(f"staging.{rule.model}")
            rows = conn.execute(
                sql.SQL(
                    "with failing as ({query}), inserted as ("
                    " insert into consent.dq_rejections (source, batch_id, file_name, line_number,"
                    "  record_id, field, rule, severity, reason, stage)"
                    " select {source}, f.batch_id, f.file_name, f.line_number, f.record_id,"
                    "  {field}, {rule}, f.severity, {reason}, 'validate' from failing as f"
                    " returning severity)"
                    " select severity, count(*) from inserted group by severity"
                ).format(
                    query=sql.SQL(query),  # type: ignore[arg-type] - built from constants
                    source=rule.source,
                    field=rule.field,
                    rule=rule.code,
                    reason=rule.reason,
                ),
            ).fetchall()
            for severity, n in rows:
                key = (rule.source, rule.code, severity)
                written[key] = written.get(key, 0) + n
        conn.execute(SUMMARY_VIEW_DDL)
        conn.execute(SUMMARY_COMMENT)
    return written


def blocking_failures(conn: psycopg.Connection) -> list[str]:
    """Rejecting catalog findings in the catalog batch in force (is_current_snapshot)."""
    blocking = sorted({r.code for r in RULES if r.blocking})
    rows = conn.execute(
        "select rule, count(*), (array_agg(record_id order by line_number))[1:5] "
        "from consent.dq_rejections where stage = 'validate' and source = 'catalog' "
        "and severity = 'reject' and rule = any(%s) and batch_id in ("
        "  select batch_id from staging.stg_catalog__consent_types where is_current_snapshot"
        "  union select batch_id from staging.stg_catalog__wordings where is_current_snapshot"
        "  union select batch_id from staging.stg_catalog__product_matrix where is_current_snapshot"
        "  union select batch_id from staging.stg_catalog__crm_flag_map where is_current_snapshot) "
        "group by rule order by rule",
        (blocking,),
    ).fetchall()
    return [f"{rule}: {n} row(s), e.g. {', '.join(ids or [])}" for rule, n, ids in rows]


def write_summary_html(conn: psycopg.Connection, path: Path) -> Path:
    rows = conn.execute(
        "select source, stage, rule, severity, rows, example_record_ids from consent.dq_summary "
        "order by source, stage, severity, rule"
    ).fetchall()
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (src, stage, rule, sev, f"{n:,}", ", ".join(ids or []))
        )
        + "</tr>"
        for src, stage, rule, sev, n, ids in rows
    )
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>consent-center: data-quality summary</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#eee}}
.reject{{color:#a00}}</style></head><body>
<h1>Data-quality summary</h1>
<p>Generated {html.escape(generated)}. One row per source, stage and rule: how many input rows
were rejected (<b>reject</b>: not counted as a grant; a doubtful revocation is still honoured)
or flagged (<b>warn</b>: kept), with example record ids. Personal data is never shown: look the
records up in <code>consent.dq_rejections</code>. Rule details:
<a href="data_docs/index.html">Great Expectations Data Docs</a>.</p>
<table><thead><tr><th>source</th><th>stage</th><th>rule</th><th>severity</th><th>rows</th>
<th>example record ids</th></tr></thead>
<tbody>
{body or '<tr><td colspan="6">no rejected or suspicious rows</td></tr>'}
</tbody></table></body></html>
""",
        encoding="utf-8",
    )
    return path


def validate_forms(
    conn: psycopg.Connection, home: Path, reports_dir: Path, database_url: str
) -> ValidationReport:
    """The whole validation step. `conn` must be autocommit (transactions are explicit)."""
    report = ValidationReport()
    missing = sorted(set(MODELS) - _staged_relations(conn))
    if missing:
        raise RuntimeError(f"staging models missing (run dbt staging first): {', '.join(missing)}")
    started = time.perf_counter()
    report.outcomes = run_suites(home, reports_dir, database_url)
    report.seconds["suites"] = time.perf_counter() - started
    if report.errors:
        raise RuntimeError("validation rule failed to run: " + "; ".join(report.errors[:3]))
    started = time.perf_counter()
    report.rows_written = write_rejections(conn, report.outcomes)
    report.blocking_failures = blocking_failures(conn)
    report.summary_html = write_summary_html(conn, reports_dir / "dq_summary.html")
    report.data_docs_index = data_docs_dir(reports_dir) / "index.html"
    report.seconds["write"] = time.perf_counter() - started
    return report
