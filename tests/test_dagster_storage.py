"""Dagster's instance in CONSENT_HOME: an event log that does not flush per event, and a
dagster.yaml that consent-center writes only while it is its own."""

from __future__ import annotations

import logging
import time
import uuid

from dagster import AssetKey, AssetMaterialization, DagsterInstance, EventLogEntry

from pipelines.dagster_storage import (
    KEPT_ENGINES,
    OLD_DAGSTER_YAML,
    UnflushedSqliteEventLogStorage,
)
from pipelines.run import prepare_dagster_home
from pipelines.settings import Settings


def _settings(tmp_path) -> Settings:
    home = tmp_path / "home"
    return Settings(home=home, landing_dir=home / "landing", database_url=None)


def test_the_event_log_skips_the_flush_and_the_run_storage_keeps_it(tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    prepare_dagster_home(settings)
    with DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        instance.report_runless_asset_event(AssetMaterialization(AssetKey(["consent", "x"])))
        storage = instance.event_log_storage
        assert isinstance(storage, UnflushedSqliteEventLogStorage)
        with storage.index_connection() as conn:
            assert conn.exec_driver_sql("pragma synchronous").scalar() == 0  # off
        with instance.run_storage.connect() as conn:
            assert conn.exec_driver_sql("pragma synchronous").scalar() == 2  # SQLite's full
        event = instance.get_latest_materialization_event(AssetKey(["consent", "x"]))
        assert event is not None  # written, and read back by a new connection
    assert (settings.dagster_home / "history" / "runs" / "index.db").exists()


def test_dagster_yaml_is_written_when_missing_or_ours_and_a_users_own_is_left_alone(tmp_path):
    settings = _settings(tmp_path)
    config = settings.dagster_home / "dagster.yaml"
    settings.dagster_home.mkdir(parents=True)
    config.write_text(OLD_DAGSTER_YAML)  # what older versions wrote
    prepare_dagster_home(settings)
    ours = config.read_text()
    assert "UnflushedSqliteEventLogStorage" in ours and ours != OLD_DAGSTER_YAML
    prepare_dagster_home(settings)
    assert config.read_text() == ours

    own = "# ours: Dagster's history on our PostgreSQL\ntelemetry:\n  enabled: false\n"
    config.write_text(own)
    prepare_dagster_home(settings)
    assert config.read_text() == own


def test_the_event_log_keeps_a_few_connections_that_another_instance_reads_through(tmp_path):
    """Events written through kept connections are at once visible to another instance (the
    UI's, a second process), writes to many runs keep no more than KEPT_ENGINES engines open,
    and disposing of the instance closes them."""
    settings = _settings(tmp_path)
    prepare_dagster_home(settings)
    with DagsterInstance.from_config(str(settings.dagster_home)) as writer:
        storage = writer.event_log_storage
        for n in range(12):
            writer.report_runless_asset_event(
                AssetMaterialization(AssetKey(["consent", f"t{n % 3}"]), metadata={"n": n})
            )
        runs = [uuid.uuid4().hex for _ in range(KEPT_ENGINES + 2)]
        for run_id in runs:
            storage.store_event(
                EventLogEntry(
                    error_info=None,
                    level=logging.INFO,
                    user_message="started",
                    run_id=run_id,
                    timestamp=time.time(),
                )
            )
        assert 0 < len(storage._engines) <= KEPT_ENGINES
        with DagsterInstance.from_config(str(settings.dagster_home)) as reader:
            latest = reader.get_latest_materialization_event(AssetKey(["consent", "t2"]))
            assert latest.asset_materialization.metadata["n"].value == 11
            assert all(reader.all_logs(run_id) for run_id in runs)
    assert storage._engines == {}
