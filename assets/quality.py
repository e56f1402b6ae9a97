"""Form and wording validation (Great Expectations 1.x) as a Dagster asset with asset checks.

`quality/form_validation` depends on every staged view it validates, runs the suites of
`expectations/` (pushed down to PostgreSQL), writes consent.dq_rejections (stage 'validate'),
Data Docs and the DPO summary. Its checks: `catalog_consistency` is BLOCKING (a catalog batch in
force that breaks its own consistency stops derivation: everything downstream of this asset is
skipped and the run says which rule failed), one non-blocking check per feed reports its
rejected and suspicious rows.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
    Output,
    asset,
)

from expectations.rules import MODELS, RULES
from pipelines.resources import ConsentCenterResource

QUALITY_GROUP = "quality"
FORM_VALIDATION_KEY = AssetKey(["quality", "form_validation"])
FEED_SOURCES = ("crm", "web", "helpdesk", "partner")


def _models_of(source: str) -> str:
    return ", ".join(sorted({f"staging.{r.model}" for r in RULES if r.source == source}))


CHECK_SPECS = [
    AssetCheckSpec(
        name="catalog_consistency",
        asset=FORM_VALIDATION_KEY,
        blocking=True,
        description=(
            "Blocking: the catalog in force names only existing consent types and wordings, "
            "its matrix rules do not overlap, dates and hashes are sane "
            f"({_models_of('catalog')})."
        ),
    ),
    *(
        AssetCheckSpec(
            name=f"{source}_forms",
            asset=FORM_VALIDATION_KEY,
            description=f"Warning only: rejected and suspicious rows of {_models_of(source)}.",
        )
        for source in FEED_SOURCES
    ),
]


@asset(
    key=FORM_VALIDATION_KEY,
    group_name=QUALITY_GROUP,
    deps=[AssetKey(["staging", model]) for model in MODELS],
    check_specs=CHECK_SPECS,
    kinds={"great_expectations", "postgres"},
    description=(
        "Every staged feed validated with Great Expectations (suites in expectations/): failing "
        "rows in consent.dq_rejections (stage 'validate'), Data Docs in "
        "CONSENT_HOME/reports/data_docs, DPO summary in consent.dq_summary and "
        "CONSENT_HOME/reports/dq_summary.html."
    ),
)
def form_validation(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    from expectations.validate import validate_forms

    settings = consent_center.settings()
    with consent_center.connect(autocommit=True) as conn:
        report = validate_forms(conn, settings.home, settings.reports_dir, consent_center.url())

    counts = {
        f"{source}/{rule} ({severity})": n
        for (source, rule, severity), n in report.rows_written.items()
    }
    context.log.info(
        f"form validation: {sum(counts.values())} rows flagged; Data Docs at "
        f"{report.data_docs_index}, DPO summary at {report.summary_html}"
    )
    if report.blocking_failures:
        context.log.error(
            "catalog in force is inconsistent, derivation stops: "
            + "; ".join(report.blocking_failures)
        )
    yield Output(
        None,
        metadata={
            "rows_flagged": MetadataValue.int(sum(counts.values())),
            "rows_per_rule": MetadataValue.json(counts),
            "data_docs": MetadataValue.path(str(report.data_docs_index)),
            "dq_summary_html": MetadataValue.path(str(report.summary_html)),
            "seconds": MetadataValue.json({k: round(v, 2) for k, v in report.seconds.items()}),
        },
    )
    catalog_counts = report.counts_by_source("catalog")
    yield AssetCheckResult(
        check_name="catalog_consistency",
        asset_key=FORM_VALIDATION_KEY,
        passed=not report.blocking_failures,
        severity=AssetCheckSeverity.ERROR,
        description=(
            "catalog in force is inconsistent, derivation stopped: "
            + "; ".join(report.blocking_failures)
            if report.blocking_failures
            else "catalog in force is consistent"
        ),
        metadata={
            "failures": MetadataValue.json(report.blocking_failures),
            "rows_per_rule": MetadataValue.json(catalog_counts),
        },
    )
    for source in FEED_SOURCES:
        source_counts = report.counts_by_source(source)
        rejected = sum(n for k, n in source_counts.items() if k.endswith("(reject)"))
        yield AssetCheckResult(
            check_name=f"{source}_forms",
            asset_key=FORM_VALIDATION_KEY,
            passed=not source_counts,
            severity=AssetCheckSeverity.WARN,
            description=f"{rejected} row(s) rejected, "
            f"{sum(source_counts.values()) - rejected} flagged as suspicious",
            metadata={"rows_per_rule": MetadataValue.json(source_counts)},
        )


QUALITY_ASSETS = [form_validation]
