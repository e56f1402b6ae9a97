"""Load throughput: consent-center ingestion against a plain COPY of the same files.

    python -m benchmarks.load_throughput --clients 100000        # generates the feeds first
    python -m benchmarks.load_throughput --feeds /tmp/f          # an existing landing zone

Prints rows/s for both, the ratio (the issue's aim: >= 70% of plain COPY), and peak memory of
the loading process and of its PostgreSQL backend.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.common import peak_rss_mib, scratch_database, server_backend_peak_mib
from sources import SOURCES
from sources.landing import all_complete_batches
from sources.loader import load_landing_zone
from sources.schema import ensure_schema


def plain_copy(url: str, landing: Path) -> tuple[int, float]:
    """COPY every file as-is into an all-text table: the ceiling any loader can approach."""
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for batch in all_complete_batches(landing):
            for spec in SOURCES[batch.source].files:
                path = batch.path / spec.file_name
                if not path.exists():
                    continue
                with conn.transaction():
                    table = sql.Identifier(f"plain_{spec.table}")
                    conn.execute(sql.SQL("drop table if exists {}").format(table))
                    if spec.file_format == "jsonl":
                        conn.execute(sql.SQL("create table {} (line text)").format(table))
                        options = sql.SQL(
                            "(format csv, delimiter E'\\x02', quote E'\\x01', escape E'\\x01')"
                        )
                    else:
                        columns = sql.SQL(", ").join(
                            sql.SQL("{} text").format(sql.Identifier(c)) for c in spec.column_names
                        )
                        conn.execute(sql.SQL("create table {} ({})").format(table, columns))
                        options = sql.SQL("(format csv, header true)")
                    with conn.cursor() as cur:
                        with (
                            cur.copy(
                                sql.SQL("copy {} from stdin {}").format(table, options)
                            ) as copy,
                            open(path, "rb") as handle,
                        ):
                            while block := handle.read(8 << 20):
                                copy.write(block)
                        rows += cur.rowcount
        return rows, time.perf_counter() - started


def ingestion(url: str, landing: Path) -> tuple[int, int, float, float | None]:
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        started = time.perf_counter()
        results = load_landing_zone(conn, landing)
        seconds = time.perf_counter() - started
        read = sum(r.rows_read for r in results)
        rejected = sum(r.rows_rejected for r in results)
        return read, rejected, seconds, server_backend_peak_mib(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--feeds", type=Path, help="existing landing zone (skips generation)")
    parser.add_argument(
        "--bad-row-rate",
        type=float,
        default=0.0,
        help="share of deliberately bad rows; plain COPY needs 0 (it stops at the first one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cc-bench-") as scratch:
        landing = args.feeds
        if landing is None:
            from sources.generator import GeneratorConfig, generate

            landing = Path(scratch) / "landing"
            config = GeneratorConfig(
                clients=args.clients, seed=args.seed, bad_row_rate=args.bad_row_rate
            )
            generate(landing, config)
        size = sum(
            p.stat().st_size for p in landing.rglob("*") if p.is_file() and "truth" not in p.parts
        )
        copy_rows, copy_seconds = 0, float("nan")
        if args.bad_row_rate == 0:
            with scratch_database() as url:
                copy_rows, copy_seconds = plain_copy(url, landing)
        with scratch_database() as url:
            read, rejected, seconds, backend_mib = ingestion(url, landing)
    result = {
        "clients": args.clients if args.feeds is None else None,
        "input_mib": round(size / 2**20, 1),
        "plain_copy_rows": copy_rows,
        "plain_copy_seconds": round(copy_seconds, 2),
        "plain_copy_rows_per_s": round(copy_rows / copy_seconds) if copy_rows else None,
        "ingest_rows": read,
        "ingest_rejected": rejected,
        "ingest_seconds": round(seconds, 2),
        "ingest_rows_per_s": round(read / seconds),
        "ratio_to_plain_copy": (
            round((read / seconds) / (copy_rows / copy_seconds), 3) if copy_rows else None
        ),
        "peak_rss_mib_loader": round(peak_rss_mib(), 1),
        "peak_rss_mib_pg_backend": round(backend_mib, 1) if backend_mib else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
