"""Asset checks on the derived consents: the generator's expected answers must all match.

When the landing zone carries a generator truth (`truth/expected_status.csv`), every sampled
question (person, purpose, channel, instant) is asked of consent_history through the same SQL
function `can-contact` uses, in one set-based query, and every answer must agree.
"""

from pathlib import Path

import psycopg
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)
from psycopg import sql

from pipelines.publication import build_schema, run_id_of
from pipelines.resources import ConsentCenterResource

HISTORY = AssetKey(["consent", "consent_history"])


def compare_expected_statuses(
    conn: psycopg.Connection, expected_csv: Path, schema: str = "consent"
) -> dict:
    """Agreement of consent_history with a generator's expected_status.csv.

    `schema`: where the history is, the published one (consent) or a run's generation.
    """
    conn.execute(
        "create temp table if not exists expected_status (person_id text, source text, "
        "source_record_id text, purpose text, channel text, partner_code text, "
        "at timestamptz, allowed boolean, status text)"
    )
    conn.execute("truncate expected_status")
    with (
        conn.cursor() as cur,
        cur.copy("copy expected_status from stdin (format csv, header true)") as copy,
        open(expected_csv, "rb") as handle,
    ):
        while block := handle.read(8 << 20):
            copy.write(block)
    rows = conn.execute(
        sql.SQL(
            """
        select q.status as expected, coalesce(s.status, 'unknown_record') as got,
               count(*) as questions,
               (array_agg(q.source || ':' || q.source_record_id || ' ' || q.purpose || '/'
                          || q.channel || ' @ ' || q.at::text order by q.at))[1:3] as examples
        from expected_status q
        left join {schema}.client_xref x using (source, source_record_id)
        left join lateral {schema}.consent_status_at(
            x.client_id, q.purpose, q.channel, coalesce(q.partner_code, ''), q.at
        ) s on x.client_id is not null
        group by 1, 2
        """
        ).format(schema=sql.Identifier(schema))
    ).fetchall()
    total = sum(r[2] for r in rows)
    matched = sum(r[2] for r in rows if r[0] == r[1])
    mismatches = {
        f"{r[0]} -> {r[1]}": {"count": r[2], "examples": r[3]} for r in rows if r[0] != r[1]
    }
    # the dangerous disagreements: the product would contact someone the truth says it may not
    unsafe = sum(r[2] for r in rows if r[1] == "granted" and r[0] != "granted")
    return {"questions": total, "matched": matched, "unsafe": unsafe, "mismatches": mismatches}


@asset_check(
    asset=HISTORY,
    name="matches_generator_expected_statuses",
    description="Every expected answer in the landing zone's truth/expected_status.csv matches.",
)
def matches_generator_expected_statuses(
    context: AssetCheckExecutionContext, consent_center: ConsentCenterResource
) -> AssetCheckResult:
    truth = consent_center.settings().landing_dir / "truth" / "expected_status.csv"
    if not truth.exists():
        return AssetCheckResult(
            passed=True, metadata={"skipped": "no truth/expected_status.csv in the landing zone"}
        )
    with consent_center.connect() as conn:
        # the history this run built, before it is published
        result = compare_expected_statuses(conn, truth, build_schema(conn, run_id_of(context)))
    agreement = result["matched"] / result["questions"] if result["questions"] else 1.0
    return AssetCheckResult(
        passed=result["matched"] == result["questions"],
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "questions": result["questions"],
            "matched": result["matched"],
            "unsafe_answers": result["unsafe"],
            "agreement": MetadataValue.float(round(agreement, 6)),
            "mismatches": MetadataValue.json(result["mismatches"]),
        },
    )
