"""Consent derivation at scale: the dbt consent models, status lookups and a segment check.

    python -m benchmarks.derivation --clients 100000            # generates the feeds first
    python -m benchmarks.derivation --feeds /tmp/f1m            # a generated landing zone

Prepared as the product prepares it, not measured: the generator's feeds (a child process, a
fresh temporary folder), the product's loader and phone table, `dbt build --select staging`,
identity taken from the generator's truth (`truth/person_xref.csv` as consent.client_xref,
so that this measures derivation alone: identity has its own benchmark), and the product's
form validation (its `validate` rejections are read by the consent models).

Measured, in a fresh process of its own: `dbt build --select intermediate marts`, the dbt step
of the product's `transform` job (assets/transform.py, dbt_consent_models): every consent
model, the reports and their tests. `derivation_seconds` is the whole invocation;
`consent_models_seconds` runs from its first node's start until the last consent model (not a
report, not a test) is built, when the consent tables can be read. Then p50/p99 of 10,000
random status lookups through consent.consent_status_at and a 100,000-record `segment` check.

Checks (any failure: exit 1): dbt built every selected model and no test failed; every one of
the generator's expected statuses (truth/expected_status.csv) is what consent_status_at
answers for the record's client at that instant: agreement must be 100 %; every lookup
answered; the segment counted every record it was given.

Writes benchmarks/results/derivation-<clients>-<time>-<commit>.json.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from benchmarks.common import (
    Verification,
    benchmark_parser,
    build_staging,
    copy_file_into,
    feed_parameters,
    feeds_or_generated,
    generation_figures,
    load_feeds,
    record_and_finish,
    run_measured,
    scratch_database,
    server_version,
)
from pipelines.answers import CHANNELS, segment
from pipelines.dbt_cli import run_dbt
from pipelines.settings import DBT_PROJECT_DIR

#: the product's selection for its consent step (assets/transform.py, dbt_consent_models)
CONSENT_SELECTION = ["intermediate", "marts"]


def _run_results() -> dict:
    target = Path(os.environ.get("DBT_TARGET_PATH") or DBT_PROJECT_DIR / "target")
    return json.loads((target / "run_results.json").read_text())


def _selected_models(url: str) -> list[str]:
    done = run_dbt(
        url, "ls", "--select", *CONSENT_SELECTION, "--resource-type", "model", "--output", "name"
    )
    return sorted(
        line.strip()
        for line in done.stdout.splitlines()
        if line.strip() and " " not in line.strip()
    )


def model_seconds(results: list[dict]) -> dict[str, float]:
    """Per-model build times of the measured invocation (dbt's own run_results.json)."""
    timings = {
        r["unique_id"].split(".")[-1]: r["execution_time"]
        for r in results
        if r["unique_id"].startswith("model.")
    }
    return {name: round(t, 1) for name, t in sorted(timings.items(), key=lambda kv: -kv[1])}


def consent_models_seconds(results: list[dict]) -> float:
    """From the first node's start to the end of the last consent model (events, key events,
    history, golden): the consent tables are ready to be read from then, while the reports and
    the tests go on."""

    def instants(result: dict) -> tuple[datetime, datetime]:
        timing = [t for t in result["timing"] if t["started_at"]]
        return (
            datetime.fromisoformat(timing[0]["started_at"]),
            datetime.fromisoformat(timing[-1]["completed_at"]),
        )

    timed = [r for r in results if any(t["started_at"] for t in r["timing"])]
    first = min(instants(r)[0] for r in timed)
    last = max(
        instants(r)[1]
        for r in timed
        if r["unique_id"].startswith("model.")
        and not r["unique_id"].split(".")[-1].startswith("report_")
    )
    return round((last - first).total_seconds(), 1)


def prepare(url: str, landing: Path, home: Path) -> dict:
    from assets.calendar import YEARS_AHEAD, write_calendar
    from expectations.validate import validate_forms
    from sources.phones import refresh_phone_numbers
    from sources.schema import ensure_schema

    timings = {}
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        started = time.perf_counter()
        load_feeds(conn, landing)
        timings["ingest_seconds"] = round(time.perf_counter() - started, 1)
        refresh_phone_numbers(conn)
        # the production calendar as the asset consent/production_calendar writes it
        write_calendar(conn, date.today().year + YEARS_AHEAD)
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy consent.client_xref (source, source_record_id, client_id) "
                "from stdin (format csv, header true)"
            ) as copy,
        ):
            copy_file_into(copy, landing / "truth" / "person_xref.csv")
        conn.execute(
            "update consent.client_xref set match_probability = 1.0;"
            "insert into consent.golden_client (client_id, source_record_count) "
            "select client_id, count(*) from consent.client_xref group by client_id"
        )
        timings["staging_build_seconds"] = build_staging(url)
        started = time.perf_counter()
        report = validate_forms(conn, home, home / "reports", url)
        if report.errors or report.blocking_failures:
            raise RuntimeError(f"validation failed: {report.errors or report.blocking_failures}")
        timings["validation_seconds"] = round(time.perf_counter() - started, 1)
    return timings


def build_consent_models(url: str) -> dict:
    """The measured step: the product's consent dbt step, in this (fresh) process."""
    started = time.perf_counter()
    try:
        run_dbt(url, "build", "--select", *CONSENT_SELECTION)
        error = None
    except RuntimeError as failure:
        error = str(failure)[-2000:]
    return {"error": error, "seconds": time.perf_counter() - started}


def agreement(url: str, expected_csv: Path) -> dict:
    """Each expected status against consent_status_at for the record's client at that instant
    (an independent reading: the generator's truth, joined here, not the product's checker)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create temp table bench_expected (person_id text, source text, "
            "source_record_id text, purpose text, channel text, partner_code text, "
            "at timestamptz, allowed boolean, status text)"
        )
        with (
            conn.cursor() as cur,
            cur.copy("copy bench_expected from stdin (format csv, header true)") as copy,
        ):
            copy_file_into(copy, expected_csv)
        rows = conn.execute(
            """
            select q.status, s.status, count(*),
                   (array_agg(q.source || ':' || q.source_record_id || ' ' || q.purpose || '/'
                              || q.channel || ' @ ' || q.at::text order by q.at))[1:3]
            from bench_expected q
            left join consent.client_xref x using (source, source_record_id)
            left join lateral consent.consent_status_at(
                x.client_id, q.purpose, q.channel, coalesce(q.partner_code, ''), q.at
            ) s on true
            group by 1, 2
            """
        ).fetchall()
    total = sum(r[2] for r in rows)
    matched = sum(r[2] for r in rows if r[0] == r[1])
    mismatches = {
        f"{r[0]} -> {r[1]}": {"count": r[2], "examples": r[3]} for r in rows if r[0] != r[1]
    }
    return {"questions": total, "matched": matched, "mismatches": mismatches}


def lookups(url: str, count: int, seed: int) -> dict:
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        clients = [
            r[0]
            for r in conn.execute("select distinct client_id from consent.client_xref order by 1")
        ]
        samples = []
        for _ in range(count):
            at = f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-15T12:00:00+03:00"
            purpose = rng.choice(["marketing", "processing"])
            samples.append((rng.choice(clients), purpose, rng.choice(CHANNELS), "", at))
        conn.execute("select * from consent.consent_status_at(%s, %s, %s, %s, %s)", samples[0])
        times, unanswered = [], 0
        for sample in samples:
            started = time.perf_counter()
            row = conn.execute(
                "select * from consent.consent_status_at(%s, %s, %s, %s, %s)", sample
            ).fetchone()
            times.append((time.perf_counter() - started) * 1000)
            unanswered += row is None
    times.sort()
    return {
        "lookups": count,
        "lookups_unanswered": unanswered,
        "lookup_p50_ms": round(statistics.median(times), 3),
        "lookup_p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
    }


def segment_check(url: str, size: int, scratch: Path) -> dict:
    from pipelines.answers import parse_instant, write_segment_list

    path = scratch / "segment.csv"
    with psycopg.connect(url, autocommit=True) as conn:
        asked = conn.execute(
            "select count(*) from (select 1 from consent.client_xref limit %s) s", (size,)
        ).fetchone()[0]
        with (
            open(path, "wb") as handle,
            conn.cursor() as cur,
            cur.copy(
                f"copy (select source, source_record_id from consent.client_xref "
                f"order by md5(source_record_id) limit {int(size)}) "
                "to stdout (format csv, header true)"
            ) as copy,
        ):
            for block in copy:
                handle.write(block)
        started = time.perf_counter()
        result = segment(conn, path, "marketing", "sms", parse_instant("2024-06-01T12:00"))
        with open(scratch / "segment_out.csv", "wb") as out:
            write_segment_list(conn, out)
        seconds = time.perf_counter() - started
    with open(scratch / "segment_out.csv", "rb") as out:
        listed = sum(1 for _ in out) - 1
    return {
        "segment_asked": asked,
        "segment_records": result.total,
        "segment_listed": listed,
        "segment_seconds": round(seconds, 2),
        "segment_counts": result.counts,
    }


def counts(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return {
            "consent_events": conn.execute("select count(*) from consent.consent_event").fetchone()[
                0
            ],
            "history_rows": conn.execute("select count(*) from consent.consent_history").fetchone()[
                0
            ],
            "golden_rows": conn.execute("select count(*) from consent.golden_consent").fetchone()[
                0
            ],
        }


def verify(
    build: dict, results: list[dict], models: list[str], agreed: dict, looked: dict, seg: dict
) -> Verification:
    v = Verification()
    v.check(
        "dbt build --select intermediate marts succeeded", build["error"] is None, build["error"]
    )
    built = sorted(
        r["unique_id"].split(".")[-1]
        for r in results
        if r["unique_id"].startswith("model.") and r["status"] == "success"
    )
    v.equal("every selected model was built", built, models)
    bad = [f"{r['unique_id']}: {r['status']}" for r in results if r["status"] in ("error", "fail")]
    v.check("no dbt node failed or errored", not bad, bad[:10] or None)
    v.check("tests ran", any(r["unique_id"].startswith("test.") for r in results))
    v.check("the generator asked questions", agreed["questions"] > 0, agreed["questions"])
    v.equal(
        "every expected status matches (agreement 100 %)", agreed["matched"], agreed["questions"]
    )
    v.equal("every lookup answered", looked["lookups_unanswered"], 0)
    v.equal(
        "the segment counted every record it was given",
        seg["segment_records"],
        seg["segment_asked"],
    )
    v.equal(
        "the segment's per-record list has every record it was given",
        seg.get("segment_listed"),
        seg["segment_asked"],
    )
    return v


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--segment", type=int, default=100_000)
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch database (its name is printed)"
    )
    args = parser.parse_args()
    started_at = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="cc-bench-derive-") as scratch:
        # dbt's own artefacts go to the scratch folder: other dbt runs in the checkout stay apart
        os.environ["DBT_TARGET_PATH"] = str(Path(scratch) / "target")
        os.environ["DBT_LOG_PATH"] = str(Path(scratch) / "logs")
        landing, generation = feeds_or_generated(args, Path(scratch), "landing")
        with scratch_database(keep=args.keep) as url:
            if args.keep:
                print(f"database kept: {url}", flush=True)
            pg_version = server_version(url)
            preparation = prepare(url, landing, Path(scratch) / "home")
            models = _selected_models(url)
            build, _, memory = run_measured(build_consent_models, url, pg_url=url)
            run_results = _run_results()["results"] if build["error"] is None else []
            figures: dict = {
                "derivation_seconds": round(build["seconds"], 1),
                "consent_models_seconds": (
                    consent_models_seconds(run_results) if run_results else None
                ),
                "models": len(models),
                "tests": sum(r["unique_id"].startswith("test.") for r in run_results),
                "tests_warned": sum(r["status"] == "warn" for r in run_results),
            }
            if build["error"] is None:
                figures.update(counts(url))
                agreed = agreement(url, landing / "truth" / "expected_status.csv")
                looked = lookups(url, args.lookups, seed=7)
                seg = segment_check(url, args.segment, Path(scratch))
            else:
                agreed = {"questions": 0, "matched": 0, "mismatches": {}}
                looked = {"lookups_unanswered": None}
                seg = {"segment_records": None, "segment_asked": None, "segment_counts": None}
    verification = verify(build, run_results, models, agreed, looked, seg)
    figures.update(
        {
            "expected_status_questions": agreed["questions"],
            "expected_status_matched": agreed["matched"],
            "expected_status_mismatches": agreed["mismatches"],
            **looked,
            **seg,
            "model_seconds": model_seconds(run_results),
            "memory": {
                "what": "the measured dbt build only: its process tree (a fresh Python process "
                "waiting on dbt; children_hwm_mib is dbt's own peak) and the PostgreSQL "
                "server's private memory during it (StepMemory, benchmarks/common.py)",
                **memory.__dict__,
            },
            "preparation": preparation,
            "generation": generation_figures(generation),
        }
    )
    parameters = feed_parameters(
        args,
        lookups=args.lookups,
        segment=args.segment,
        dbt_command="dbt build --select " + " ".join(CONSENT_SELECTION),
        identity="generator truth (truth/person_xref.csv)",
    )
    record_and_finish(
        "derivation",
        args,
        parameters,
        figures,
        verification,
        pg_version=pg_version,
        started_at=started_at,
        hide=("model_seconds",),
    )


if __name__ == "__main__":
    main()
