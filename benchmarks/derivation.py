"""Consent derivation at scale: dbt consent models, status lookups and a segment check.

    python -m benchmarks.derivation --feeds /tmp/f1m            # a generated landing zone
    python -m benchmarks.derivation --clients 100000            # generates the feeds first

Identity is taken from the generator's truth (`truth/person_xref.csv`) so that this measures
derivation alone (identity resolution has its own benchmark). Prints the time of the one dbt
invocation that builds the consent models and the reports (`derivation_seconds`), the time
until the last consent model (golden_consent) is built (`consent_models_seconds`), p50/p99 of
10,000 random status lookups through consent.consent_status_at, the time of a 100,000-record
`segment` check, and agreement with expected_status.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from assets.consent_checks import compare_expected_statuses
from benchmarks.common import peak_rss_mib, scratch_database
from pipelines.answers import CHANNELS, segment
from pipelines.dbt_cli import run_dbt
from pipelines.settings import DBT_PROJECT_DIR
from sources.loader import load_landing_zone
from sources.phones import refresh_phone_numbers
from sources.schema import ensure_schema

CONSENT_MODELS = ["intermediate", "marts"]  # dbt folders: every consent model


def _dbt(url: str, *args: str) -> float:
    started = time.perf_counter()
    run_dbt(url, *args)
    return time.perf_counter() - started


def _run_results() -> list[dict]:
    target = Path(os.environ.get("DBT_TARGET_PATH") or DBT_PROJECT_DIR / "target")
    return json.loads((target / "run_results.json").read_text())["results"]


def model_seconds() -> dict[str, float]:
    """Per-model build times of the last dbt invocation (dbt's own run_results.json)."""
    timings = {r["unique_id"].split(".")[-1]: r["execution_time"] for r in _run_results()}
    return {name: round(t, 1) for name, t in sorted(timings.items(), key=lambda kv: -kv[1])}


def consent_models_seconds() -> float:
    """From the first model's start to the last consent model's end (events, key events,
    history, golden), leaving out the reports built after them: the consent tables are ready to
    be read from that moment, while the reports go on (DESIGN section 8 reports, issue 7)."""
    from datetime import datetime

    def instants(result: dict) -> tuple[datetime, datetime]:
        timing = [t for t in result["timing"] if t["started_at"]]
        return (
            datetime.fromisoformat(timing[0]["started_at"]),
            datetime.fromisoformat(timing[-1]["completed_at"]),
        )

    results = _run_results()
    first = min(instants(r)[0] for r in results)
    last = max(
        instants(r)[1] for r in results if not r["unique_id"].split(".")[-1].startswith("report_")
    )
    return (last - first).total_seconds()


def prepare(url: str, landing: Path) -> dict:
    timings = {}
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        started = time.perf_counter()
        load_landing_zone(conn, landing)
        timings["ingest_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        refresh_phone_numbers(conn)
        timings["phones_seconds"] = time.perf_counter() - started
        conn.execute(
            "create table if not exists consent.client_xref (source text, source_record_id text, "
            "client_id text, match_probability float8, primary key (source, source_record_id))"
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy consent.client_xref (source, source_record_id, client_id) "
                "from stdin (format csv, header true)"
            ) as copy,
        ):
            copy.write((landing / "truth" / "person_xref.csv").read_bytes())
        for table in ("golden_client", "identity_ambiguous_matches"):
            conn.execute(f"create table if not exists consent.{table} (client_id text)")
    timings["staging_seconds"] = _dbt(url, "run", "--select", "staging")
    return timings


def lookups(url: str, count: int, seed: int) -> dict:
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        clients = [
            r[0]
            for r in conn.execute(
                "select client_id from consent.client_xref tablesample system (5) limit 50000"
            )
        ]
        samples = []
        for _ in range(count):
            at = f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-15T12:00:00+03:00"
            purpose = rng.choice(["marketing", "processing"])
            samples.append((rng.choice(clients), purpose, rng.choice(CHANNELS), "", at))
        conn.execute("select * from consent.consent_status_at(%s, %s, %s, %s, %s)", samples[0])
        times = []
        for sample in samples:
            started = time.perf_counter()
            conn.execute(
                "select * from consent.consent_status_at(%s, %s, %s, %s, %s)", sample
            ).fetchone()
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "lookups": count,
        "lookup_p50_ms": round(statistics.median(times), 3),
        "lookup_p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
    }


def segment_check(url: str, size: int, scratch: Path) -> dict:
    path = scratch / "segment.csv"
    with psycopg.connect(url, autocommit=True) as conn:
        with (
            open(path, "wb") as handle,
            conn.cursor() as cur,
            cur.copy(
                f"copy (select source, source_record_id from consent.client_xref "
                f"order by md5(source_record_id) limit {size}) to stdout (format csv, header true)"
            ) as copy,
        ):
            for block in copy:
                handle.write(block)
        from pipelines.answers import parse_instant, write_segment_list

        started = time.perf_counter()
        result = segment(conn, path, "marketing", "sms", parse_instant("2024-06-01T12:00"))
        with open(scratch / "segment_out.csv", "wb") as out:
            write_segment_list(conn, out)
        seconds = time.perf_counter() - started
    return {
        "segment_records": result.total,
        "segment_seconds": round(seconds, 2),
        "segment_counts": result.counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--feeds", type=Path)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--segment", type=int, default=100_000)
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch database (its name is printed)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cc-derive-") as scratch:
        # dbt's own artefacts go to the scratch folder: other dbt runs in the checkout stay apart
        os.environ["DBT_TARGET_PATH"] = str(Path(scratch) / "target")
        os.environ["DBT_LOG_PATH"] = str(Path(scratch) / "logs")
        landing = args.feeds
        if landing is None:
            from sources.generator import GeneratorConfig, generate

            landing = Path(scratch) / "landing"
            generate(landing, GeneratorConfig(clients=args.clients, seed=1))
        with scratch_database(keep=args.keep) as url:
            if args.keep:
                print(f"database kept: {url}", flush=True)
            result = prepare(url, landing)
            result["derivation_seconds"] = _dbt(url, "run", "--select", *CONSENT_MODELS)
            result["consent_models_seconds"] = consent_models_seconds()
            result["model_seconds"] = model_seconds()
            with psycopg.connect(url, autocommit=True) as conn:
                result["consent_events"] = conn.execute(
                    "select count(*) from consent.consent_event"
                ).fetchone()[0]
                result["history_rows"] = conn.execute(
                    "select count(*) from consent.consent_history"
                ).fetchone()[0]
                agreement = compare_expected_statuses(
                    conn, landing / "truth" / "expected_status.csv"
                )
                result["expected_status_questions"] = agreement["questions"]
                result["expected_status_matched"] = agreement["matched"]
            result.update(lookups(url, args.lookups, seed=7))
            result.update(segment_check(url, args.segment, Path(scratch)))
    result = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
