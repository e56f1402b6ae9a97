"""The Great Expectations side: a File Data Context under CONSENT_HOME/gx, suites built in code.

One suite per staged dbt view (`<model>`), one UnexpectedRowsExpectation per rule: GX pushes
each rule's query down to PostgreSQL (a COUNT and at most a handful of sample rows), never a
table into pandas. The datasource's connection string is `${CONSENT_GX_DATABASE_URL}`, so no
password is written to great_expectations.yml; it is set in the environment before each run.

GX is imported inside the functions: importing it takes seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from expectations.rules import MODELS, SOURCE_OF_MODEL, rules_for

DATASOURCE = "consent_postgres"
CHECKPOINT = "form_validation"
SITE = "consent_center"
URL_VARIABLE = "CONSENT_GX_DATABASE_URL"
BATCH_DEFINITION = "all_staged_batches"


def sqlalchemy_url(url: str) -> str:
    """A libpq URL or key=value string as a SQLAlchemy URL for psycopg 3 (unix sockets too)."""
    from sqlalchemy.engine import URL

    params = conninfo_to_dict(url)
    host = params.pop("host", None)
    port = params.pop("port", None)
    query: dict[str, str] = {
        k: str(v) for k, v in params.items() if k not in ("user", "password", "dbname")
    }
    socket = bool(host) and str(host).startswith("/")
    if socket:
        query["host"] = str(host)
        if port:
            query["port"] = str(port)
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password") or None,
        host=None if socket else host,
        port=None if socket or not port else int(port),
        database=params.get("dbname"),
        query=query,
    ).render_as_string(hide_password=False)


def gx_root(home: Path) -> Path:
    return home / "gx"


def data_docs_dir(reports_dir: Path) -> Path:
    return reports_dir / "data_docs"


def suite_name(model: str) -> str:
    return f"{model}.forms"


def build_suite(model: str):
    """The expectation suite of one staged view, one expectation per rule."""
    import great_expectations as gx
    from great_expectations.expectations import UnexpectedRowsExpectation

    suite = gx.ExpectationSuite(
        name=suite_name(model),
        meta={"source": SOURCE_OF_MODEL[model], "staged_view": f"staging.{model}"},
    )
    for rule in rules_for(model):
        suite.add_expectation(
            UnexpectedRowsExpectation(
                unexpected_rows_query=rule.failing_rows_query(),
                description=rule.description,
                meta={
                    "rule": rule.code,
                    "field": rule.field,
                    "source": rule.source,
                    "blocking": rule.blocking,
                },
            )
        )
    return suite


def get_context(home: Path, reports_dir: Path, database_url: str):
    """Open (creating it on first use) the File Data Context and make it match the code."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    os.environ[URL_VARIABLE] = sqlalchemy_url(database_url)
    root = gx_root(home)
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(home))
    docs = data_docs_dir(reports_dir)
    docs.mkdir(parents=True, exist_ok=True)
    sites: dict[str, Any] = {
        SITE: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    }
    quiet = ProgressBarsConfig(globally=False, metric_calculations=False)
    if context.variables.data_docs_sites != sites or context.variables.progress_bars != quiet:
        context.variables.data_docs_sites = sites
        context.variables.progress_bars = quiet
        context.variables.save()

    datasource = context.data_sources.add_or_update_postgres(
        name=DATASOURCE, connection_string="${" + URL_VARIABLE + "}"
    )
    definitions = []
    for model in MODELS:
        asset = datasource.add_table_asset(name=model, table_name=model, schema_name="staging")
        batch = asset.add_batch_definition_whole_table(BATCH_DEFINITION)
        suite = context.suites.add_or_update(build_suite(model))
        definitions.append(
            context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"validate_{model}", data=batch, suite=suite)
            )
        )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=definitions,
            # no UpdateDataDocsAction: it rebuilds the site, index included, once per
            # validation result (eleven times a run, the index listing every run so far);
            # run_suites builds it once for the whole checkpoint instead
            actions=[],
            result_format="SUMMARY",
        )
    )
    return context, checkpoint
