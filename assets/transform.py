"""dbt models as Dagster assets: staging, intermediate and marts, in one graph with the raw assets.

dbt sources carry `meta.dagster.asset_key` = ["raw", <table>], the keys the ingestion assets use,
so lineage runs from a landing batch to every golden table without glue code.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetMaterialization, Config, Output
from dagster._utils import run_with_concurrent_update_guard
from dagster_dbt import (
    DagsterDbtProjectPreparer,
    DagsterDbtTranslator,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from pipelines.derivation_scope import DerivationScope, plan_derivation
from pipelines.publication import Generation, prepare_generation, published_generation
from pipelines.resources import ConsentCenterResource
from pipelines.settings import DBT_PROJECT_DIR, as_of_text, dbt_executable


class DbtBesidePythonPreparer(DagsterDbtProjectPreparer):
    """Parses the project with the dbt installed beside this Python, not the first `dbt` on PATH.

    dagster-dbt's own preparer builds a `DbtCliResource` with its default executable, `dbt`, and
    fails ("dbt executable not found") when the virtual environment's bin/ is not on PATH: cron,
    systemd, or `.venv/bin/consent-center` called from another folder on a fresh install.
    """

    def prepare(self, project: DbtProject) -> None:
        cli = DbtCliResource(
            project_dir=project,
            profiles_dir=str(project.profiles_dir),
            dbt_executable=dbt_executable(),
        )
        if any(
            (project.project_dir / name).exists() for name in ("packages.yml", "dependencies.yml")
        ):
            run_with_concurrent_update_guard(
                project.project_dir / "package-lock.yml",
                lambda: cli.cli(["deps", "--quiet"], target_path=project.target_path).wait(),
            )
        # several processes may find the manifest missing at once: one parses, the others wait
        run_with_concurrent_update_guard(
            project.manifest_path,
            lambda: cli.cli(["parse", "--quiet"], target_path=project.target_path).wait(),
        )


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# DbtProject takes no preparer of its own choosing (it always builds dagster-dbt's default), so
# the project's own code prepares through this one; nothing here calls `dbt_project.preparer`.
preparer = DbtBesidePythonPreparer()


def _manifest_is_stale(project: DbtProject) -> bool:
    manifest: Path = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    watched = [DBT_PROJECT_DIR / "dbt_project.yml"]
    for folder in ("models", "macros", "tests"):
        watched.extend((DBT_PROJECT_DIR / folder).rglob("*"))
    return any(path.is_file() and path.stat().st_mtime > built for path in watched)


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """Parse the dbt project when its manifest is missing or older than its sources.

    `dagster dev` does this itself (prepare_if_dev); the CLI, tests and a fresh clone need it too.
    """
    if _manifest_is_stale(project):
        preparer.prepare(project)
    return project.manifest_path


class ConsentDbtTranslator(DagsterDbtTranslator):
    """Models are keyed by their schema (staging/..., consent/...) and grouped by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        schema = dbt_resource_props.get("config", {}).get("schema") or "consent"
        return AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "dbt"


class DerivationConfig(Config):
    """How much a run derives: the clients its changes reach (the default), or every client."""

    full_derivation: bool = False


def _plan(context, consent_center, build: Generation, as_of, full: bool):
    """The generation's schemas, its dbt vars and what it derives (pipelines/derivation_scope)."""
    with consent_center.connect(autocommit=True) as conn:
        prepare_generation(conn, build)
        variables = build.dbt_vars(conn)
        published = published_generation(conn)
        scope = plan_derivation(
            conn,
            build.staging,
            variables["identity_schema"],
            as_of,
            published=(published.staging, published.consent) if published else None,
            full=full,
        )
    if scope.incremental:
        variables["affected_schema"] = build.staging
        variables["published_schema"] = published.staging
    context.log.info(
        f"building generation {build.name} (identity from {variables['identity_schema']}): "
        + (
            f"{scope.affected_clients} clients affected by {scope.reason}"
            if scope.incremental
            else f"every client derived: {scope.reason}"
        )
    )
    return variables, scope


def _dbt_build(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    consent_center,
    generation: bool = False,
    full_derivation: bool = False,
):
    """`dbt build` at the run's instant (CONSENT_DBT_AS_OF), which every model's metadata shows.

    With `generation`, the models go to the run's own schemas (pipelines/publication.py), which
    the change feed asset publishes once everything is built, for the clients the run's changes
    reach unless `full_derivation` (pipelines/derivation_scope.py); every materialisation says
    which and how many.
    """
    as_of = consent_center.as_of()
    consent_center.export_dbt_env(as_of)
    # unit tests test the models' code, not the day's data: the suite runs them
    # (tests/test_dbt_unit_tests.py), production runs the data tests only, as dbt advises
    args = ["build", "--exclude", "resource_type:unit_test"]
    scope: DerivationScope | None = None
    if generation:
        build = Generation.of_run(context.run_id)
        variables, scope = _plan(context, consent_center, build, as_of, full_derivation)
        args += ["--vars", json.dumps(variables)]
    context.log.info(f"dbt build as of {as_of_text(as_of)}")
    invocation = dbt.cli(
        args, context=context, target_path=consent_center.dbt_target_path(context.op_def.name)
    )
    # held until dbt ends, so that each model's materialisation can say how many rows its build
    # wrote (run_results.json); the step's assets are only released when it ends anyway
    events = []
    try:
        events.extend(invocation.stream())
    except Exception:
        yield from events  # what was built before the failure, as dagster-dbt yields it
        raise
    written = rows_written(invocation.get_artifact("run_results.json"))
    for event in events:
        if isinstance(event, Output | AssetMaterialization):
            metadata = {**event.metadata, "as_of": as_of_text(as_of)}
            if scope is not None:
                metadata.update(scope.metadata())
            unique_id = getattr(event.metadata.get("unique_id"), "value", None)
            if unique_id in written:
                metadata["rows_written"] = written[unique_id]
            event = event.with_metadata(metadata)
        yield event


def rows_written(run_results: Mapping[str, Any]) -> dict[str, int]:
    """Rows each model's build wrote, by dbt unique id, from dbt's adapter responses: the rows an
    incremental model took in this run (a day's batches: none when nothing new came), a table's
    whole size. Views write none and are left out."""
    written = {}
    for result in run_results.get("results", []):
        response = result.get("adapter_response") or {}
        rows = response.get("rows_affected")
        if (
            result.get("unique_id", "").startswith("model.")
            and isinstance(rows, int)
            and (rows >= 0 and response.get("code") in ("INSERT", "SELECT"))
        ):
            written[result["unique_id"]] = rows
    return written


# Two dbt steps with Python in between: staging feeds identity resolution (splink) and form
# validation (Great Expectations), whose results the consent models read.
@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=ConsentDbtTranslator(),
    select="staging",
    name="dbt_staging_models",
)
def dbt_staging_models(
    context: AssetExecutionContext, dbt: DbtCliResource, consent_center: ConsentCenterResource
):
    yield from _dbt_build(context, dbt, consent_center)


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=ConsentDbtTranslator(),
    select="intermediate marts",
    name="dbt_consent_models",
)
def dbt_consent_models(
    context: AssetExecutionContext,
    dbt: DbtCliResource,
    consent_center: ConsentCenterResource,
    config: DerivationConfig,
):
    yield from _dbt_build(
        context, dbt, consent_center, generation=True, full_derivation=config.full_derivation
    )


DBT_ASSETS = [dbt_staging_models, dbt_consent_models]
