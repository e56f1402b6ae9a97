"""Dagster's event log on SQLite, without a disk flush per event.

Dagster's SQLite event log opens a connection for every event it writes and closes it again;
each commit and each close (the WAL checkpoint of the last connection) waits for the disk. A
run writes some 800 events (a dbt test is a planned check, an output and an evaluation), and
on this machine those waits made a quarter of a small run. Here the connections of the event
log skip the flush (`synchronous = OFF`): a killed process loses nothing, since the operating
system still holds what was written; only a power cut or a kernel crash can lose the newest
events or damage a shard.

What the product keeps is not there: consents, batches, the run lock and the change feed live
in PostgreSQL with its full durability, and Dagster's run storage (which run ran, and how it
ended) keeps SQLite's default. A damaged event log is a Dagster history to set aside
(`CONSENT_HOME/dagster/history/runs`), never a consent lost. An installation that wants
Dagster's history on a durable server names Dagster's PostgreSQL storage in its dagster.yaml
instead: `consent-center` writes that file only when it is missing or still the one it wrote.

It also keeps its connections: Dagster's opens a SQLite engine for every event, writes one row
and disposes of the engine again (10 ms an event here; 2 ms with the connection kept, some
6 s of a small run). The engines of the last few shards (the index and the runs being
written) stay open, one connection per thread, and are disposed of when the instance is, or
before Dagster deletes their files.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import SingletonThreadPool

#: the event log folders whose SQLite connections skip the flush (absolute paths)
_UNFLUSHED: set[str] = set()


@event.listens_for(Engine, "connect")
def _skip_flush_for_the_event_log(dbapi_connection, _record) -> None:
    if not _UNFLUSHED or not type(dbapi_connection).__module__.startswith("sqlite3"):
        return
    files = [row[2] for row in dbapi_connection.execute("pragma database_list")]
    if any(path and os.path.dirname(path) in _UNFLUSHED for path in files):
        dbapi_connection.execute("pragma synchronous = off")


#: how many shards' engines stay open: the index, the run being written, and a few it reads
KEPT_ENGINES = 4


class UnflushedSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log whose writes do not wait for the disk and that keeps its
    connections (see the module)."""

    def __init__(self, base_dir: str, inst_data=None):
        _UNFLUSHED.add(os.path.abspath(base_dir))
        # before super().__init__, which already reads the index shard
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        """Dagster's `_connect` (one transaction under the storage's lock), on a kept engine."""
        with self._db_lock:
            engine = self._engines.get(shard)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=SingletonThreadPool,
                    connect_args={
                        "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                        "check_same_thread": False,
                    },
                )
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
                self._engines[shard] = engine
                while len(self._engines) > KEPT_ENGINES:
                    _, oldest = self._engines.popitem(last=False)
                    oldest.dispose()
            else:
                self._engines.move_to_end(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _dispose_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._dispose_engines()  # its files are deleted: no connection may write to them
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)


#: the first line of a dagster.yaml that consent-center wrote (and may rewrite)
MARK = "# written by consent-center"
#: what versions before the unflushed event log wrote into CONSENT_HOME/dagster/dagster.yaml
OLD_DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def written_by_consent_center(text: str) -> bool:
    """Whether a dagster.yaml is one consent-center wrote (this version's or an older one's),
    and so may be rewritten; anything else is the user's own."""
    return text == OLD_DAGSTER_YAML or text.startswith(MARK)


def dagster_yaml(dagster_home: os.PathLike) -> str:
    """The instance configuration consent-center writes into CONSENT_HOME/dagster."""
    runs = json.dumps(os.path.join(os.path.abspath(dagster_home), "history", "runs", ""))
    return (
        f"{MARK} (pipelines/dagster_storage.py); replace it to choose\n"
        "# another storage, and it is left alone\n"
        "telemetry:\n"
        "  enabled: false\n"
        "event_log_storage:\n"
        "  module: pipelines.dagster_storage\n"
        "  class: UnflushedSqliteEventLogStorage\n"
        "  config:\n"
        f"    base_dir: {runs}\n"
    )
