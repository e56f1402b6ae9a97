"""Validation time: the Great Expectations suites of expectations/ over staged feeds.

    python -m benchmarks.validation_time --clients 100000     # generates the feeds first
    python -m benchmarks.validation_time --feeds /tmp/f1m     # an existing landing zone

Loads the feeds into a scratch database, builds the dbt staging views, then times
`validate_forms` (GX checkpoint pushed down to PostgreSQL + dq_rejections + Data Docs + DPO
summary). Prints seconds, rows flagged, and peak memory of this process and of its backend.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks.common import peak_rss_mib, scratch_database
from pipelines.dbt_cli import run_dbt
from sources.loader import load_landing_zone
from sources.phones import refresh_phone_numbers
from sources.schema import ensure_schema


def stage(url: str, feeds: Path) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        load_landing_zone(conn, feeds)
        refresh_phone_numbers(conn)
    run_dbt(url, "run", "--select", "path:models/staging")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--feeds", type=Path, help="existing landing zone (skips generation)")
    parser.add_argument("--runs", type=int, default=1, help="validation runs on the same data")
    args = parser.parse_args()

    from expectations.validate import validate_forms

    with tempfile.TemporaryDirectory(prefix="cc-validate-") as tmp:
        feeds = args.feeds
        if feeds is None:
            from sources.generator import GeneratorConfig, generate

            feeds = Path(tmp) / "feeds"
            generate(feeds, GeneratorConfig(clients=args.clients, seed=1))
        home = Path(tmp) / "home"
        with scratch_database() as url:
            staging_seconds = stage(url, feeds)
            timings = []
            with psycopg.connect(url, autocommit=True) as conn:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    report = validate_forms(conn, home, home / "reports", url)
                    timings.append(time.perf_counter() - started)
                counts = dict(
                    conn.execute(
                        "select 'web_event_consents', count(*) from staging.stg_web__event_consents"
                        " union all select 'crm_contracts', count(*) "
                        "from staging.stg_crm__contracts"
                        " union all select 'crm_consent_flags', count(*) "
                        "from staging.stg_crm__consent_flags"
                    ).fetchall()
                )
                backend = conn.execute(
                    "select pg_size_pretty(pg_database_size(current_database()))"
                ).fetchone()[0]
    result = {
        "feeds": str(args.feeds or f"generated, {args.clients} clients"),
        "staged_rows": counts,
        "database_size": backend,
        "load_and_stage_seconds": round(staging_seconds, 1),
        "validation_seconds": [round(t, 1) for t in timings],
        "validation_breakdown": {k: round(v, 1) for k, v in report.seconds.items()},
        "rows_flagged": {"/".join(k): v for k, v in sorted(report.rows_written.items())},
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
