"""Dagster's instance in CONSENT_HOME: an event log that does not flush per event, and a
dagster.yaml that consent-center writes only while it is its own."""

from __future__ import annotations

from dagster import AssetKey, AssetMaterialization, DagsterInstance

from pipelines.dagster_storage import OLD_DAGSTER_YAML, UnflushedSqliteEventLogStorage
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
