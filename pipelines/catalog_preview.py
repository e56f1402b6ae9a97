"""Dry run of a catalog change (DESIGN rule 7): who gains or loses which consent, before it applies.

The candidate catalog folder is loaded as raw batch `preview-<name>` (ordinary runs never see
preview batches), every consent model is rebuilt from full product history into the
`*_preview` schemas with that catalog in force, and the preview's golden_consent is compared
with the one in production. Production tables are not touched; the preview batch is removed
afterwards, the preview schemas stay for inspection until the next preview.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from pipelines.dbt_cli import run_dbt
from pipelines.settings import clock_from_env
from sources import SOURCES
from sources.loader import load_batch
from sources.readers import BatchFileError
from sources.schema import RAW_SCHEMA, ensure_schema, partition_name

PREVIEW_PREFIX = "preview-"
# A batch id as the landing contract allows it. The preview's batch id reaches SQL (the dbt var
# catalog_batch_id, which macros/catalog.sql validates again) and the diff file's name, so a
# folder named otherwise (a quote, a slash, a newline) is refused before anything runs.
# Defined here until sources/landing.py exposes the landing zone's own pattern; keep them equal.
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
DIFF_QUERY = """
    select coalesce(p.client_id, c.client_id) as client_id,
           coalesce(p.purpose, c.purpose) as purpose,
           coalesce(p.channel, c.channel) as channel,
           coalesce(p.partner_code, c.partner_code) as partner_code,
           coalesce(c.status, 'none') as status_now,
           coalesce(p.status, 'none') as status_after,
           case when coalesce(p.status, 'none') = 'granted' then 'gains'
                when coalesce(c.status, 'none') = 'granted' then 'loses'
                else 'changes' end as effect
    from consent.golden_consent c
    full join consent_preview.golden_consent p
        using (client_id, purpose, channel, partner_code)
    where coalesce(c.status, 'none') is distinct from coalesce(p.status, 'none')
"""


@dataclass
class CatalogPreview:
    batch_id: str
    clients_affected: int
    changes: dict[str, int]  # "purpose/channel: granted -> expired" -> keys changed
    diff_file: Path

    def as_dict(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "clients_affected": self.clients_affected,
            "changes": self.changes,
            "diff_file": str(self.diff_file),
        }


def _drop_preview_batch(conn: psycopg.Connection, batch_id: str) -> None:
    for spec in SOURCES["catalog"].tables:
        conn.execute(
            sql.SQL("drop table if exists {}").format(
                sql.Identifier(RAW_SCHEMA, partition_name(spec.table, batch_id))
            )
        )
    conn.execute(
        "delete from consent.ingest_batches where source = 'catalog' and batch_id = %s", (batch_id,)
    )
    conn.execute(
        "delete from consent.dq_rejections where source = 'catalog' and batch_id = %s", (batch_id,)
    )


def _production_as_of(conn: psycopg.Connection) -> datetime | None:
    """The instant production's golden_consent was built at (its run's staging build)."""
    if conn.execute("select to_regclass('staging.stg_run__as_of')").fetchone()[0] is None:
        return None
    row = conn.execute("select as_of from staging.stg_run__as_of").fetchone()
    return row[0] if row else None


def preview_catalog(url: str, folder: Path, reports_dir: Path) -> CatalogPreview:
    """Re-derive everything with the catalog in `folder` and compare with production."""
    name = Path(os.path.abspath(folder)).name  # "." and "x/.." name their folders too
    if not BATCH_ID_PATTERN.fullmatch(name):
        raise BatchFileError(
            f"catalog preview: the folder name {name!r} is not a batch id "
            "(1-64 letters, digits or ._:+-, starting with a letter or digit); rename it"
        )
    if not folder.is_dir():
        raise BatchFileError(f"catalog preview: {str(folder)!r} is not a catalog batch folder")
    batch_id = f"{PREVIEW_PREFIX}{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        _drop_preview_batch(conn, batch_id)
        result = load_batch(conn, "catalog", folder, batch_id=batch_id)
        if result.rows_rejected:
            _drop_preview_batch(conn, batch_id)
            raise BatchFileError(
                f"catalog preview: {result.rows_rejected} rows of {folder} were rejected "
                "(see consent.dq_rejections); fix the catalog first"
            )
        # at production's instant, so that only the catalog differs (CONSENT_NOW, if set, wins)
        as_of = clock_from_env() or _production_as_of(conn)
    try:
        variables = json.dumps({"catalog_batch_id": batch_id, "schema_suffix": "_preview"})
        run_dbt(url, "run", "--select", "intermediate", "marts", "--vars", variables, as_of=as_of)
        reports_dir.mkdir(parents=True, exist_ok=True)
        diff_file = reports_dir / f"catalog_preview_{name}.csv"
        with psycopg.connect(url, autocommit=True) as conn:
            with (
                open(diff_file, "wb") as out,
                conn.cursor() as cur,
                cur.copy(
                    f"copy ({DIFF_QUERY} order by 1, 2, 3, 4) to stdout (format csv, header true)"
                ) as copy,
            ):
                for block in copy:
                    out.write(block)
            changes = {
                f"{purpose}/{channel}: {before} -> {after}": count
                for purpose, channel, before, after, count in conn.execute(
                    f"select purpose, channel, status_now, status_after, count(*) "
                    f"from ({DIFF_QUERY}) d group by 1, 2, 3, 4 order by 5 desc, 1, 2"
                )
            }
            clients = conn.execute(
                f"select count(distinct client_id) from ({DIFF_QUERY}) d"
            ).fetchone()[0]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            _drop_preview_batch(conn, batch_id)
    return CatalogPreview(batch_id, clients, changes, diff_file)
