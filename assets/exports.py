"""Every report as a CSV file in CONSENT_HOME/reports/, for DPOs who do not write SQL."""

import psycopg
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset
from psycopg import sql

from assets.depersonalisation import DEPERSONALISATION_KEY
from pipelines.resources import ConsentCenterResource

REPORTS = (
    "report_expiring",
    "report_conflicts",
    "report_revocation_deadlines",
    "report_depersonalisation",
)
#: views over the API's acknowledgements and the change feed, kept by the API itself
#: (pipelines/api/changes.py), not by a run
API_REPORTS = ("report_propagation",)


def export_reports(conn: psycopg.Connection, folder) -> dict[str, int]:
    """COPY each report table straight to a CSV file (streamed, never held in memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for report in (*REPORTS, *API_REPORTS):
        exists = conn.execute("select to_regclass(%s)", (f"consent.{report}",)).fetchone()[0]
        if not exists:
            continue
        with open(folder / f"{report}.csv", "wb") as out, conn.cursor() as cur:
            with cur.copy(
                sql.SQL("copy (select * from {}) to stdout (format csv, header true)").format(
                    sql.Identifier("consent", report)
                )
            ) as copy:
                for block in copy:
                    out.write(block)
            rows[report] = cur.rowcount
    return rows


@multi_asset(
    name="report_csv_exports",
    specs=[
        AssetSpec(
            AssetKey(["reports", "csv_exports"]),
            # after the depersonalisation, which marks the clients it executed `done`
            deps=[
                *(AssetKey(["consent", report]) for report in REPORTS),
                AssetKey(["consent", "consent_change"]),  # the publication
                DEPERSONALISATION_KEY,
            ],
            description="The reports as CSV files in CONSENT_HOME/reports/.",
            group_name="publish",
            kinds={"csv"},
        )
    ],
)
def report_csv_exports(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    folder = consent_center.settings().reports_dir
    with consent_center.connect() as conn:
        rows = export_reports(conn, folder)
    context.log.info(f"reports exported to {folder}: {rows}")
    return MaterializeResult(metadata={"folder": str(folder), **rows})
