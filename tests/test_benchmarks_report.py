"""The README's benchmark tables come from benchmarks/results/ (python -m benchmarks.report).

The first tests run the report on a results folder and a README they write themselves and
check the table it produces, cell by cell, against one worked by hand here. The last checks
that the repository's README has exactly the tables its results files give, so a figure
edited by hand in a table fails it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_result(date: str, commit: str, rows: int, seconds: float, passed: bool = True) -> dict:
    return {
        "schema": 1,
        "benchmark": "load",
        "size": "100",
        "date": date,
        "started_at": date,
        "command": "python -m benchmarks.load_throughput --clients 100",
        "git": {"commit": commit, "modified_tracked_files": []},
        "machine": {
            "cores": 2,
            "cpu_model": "Test CPU",
            "memory_gib": 8.0,
            "load_average_at_start": [0.5, 0.4, 0.3],
            "postgresql": "18.6",
        },
        "parameters": {"clients": 100, "seed": 1, "bad_row_rate": 0.0},
        "figures": {
            "input_mib": 0.25,
            "batches": 14,
            "batches_failed": 0,
            "rows_read": rows,
            "rows_loaded": rows - 2,
            "rows_rejected": 2,
            "plain_copy_rows": rows,
            "plain_copy_seconds": 0.5,
            "plain_copy_rows_per_s": rows * 2,
            "ingest_seconds": seconds,
            "ingest_rows_per_s": round(rows / seconds),
            "ratio_to_plain_copy": round((rows / seconds) / (rows * 2), 3),
            "memory": {
                "tree_peak_mib": 95.4,
                "self_hwm_mib": 95.4,
                "children_hwm_mib": 0.0,
                "pg_private_peak_mib": 44.6,
                "pg_private_baseline_mib": 30.0,
                "pg_backend_vmhwm_mib": 47.0,
            },
            "generation": {"seconds": 1.25, "peak_rss_mib": 70.2, "bad_rows": 0, "sources": {}},
        },
        "verification": {"passed": passed, "checks": [{"name": "x", "passed": passed}]},
    }


def _write(folder: Path, name: str, result: dict) -> None:
    (folder / name).write_text(json.dumps(result), encoding="utf-8")


README_TEMPLATE = """# Title

Text before.

<!-- benchmarks:load:start -->
a figure typed in by hand
<!-- benchmarks:load:end -->

Between.

<!-- benchmarks:identity:start -->
<!-- benchmarks:identity:end -->

Text after.
"""


def _report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.report", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_writes_the_table_of_the_newest_passed_run_per_size(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    old = "load-100-20260101T000000Z-aaaaaaaa.json"
    new = "load-100-20260201T000000Z-bbbbbbbb.json"
    _write(results, old, _load_result("2026-01-01T00:00:00+00:00", "a" * 40, 1000, 4.0))
    _write(results, new, _load_result("2026-02-01T00:00:00+00:00", "b" * 40, 2000, 2.0))
    # newer, but its checks failed: never shown, whether named -FAILED or not
    _write(
        results,
        "load-100-20260301T000000Z-cccccccc-FAILED.json",
        _load_result("2026-03-01T00:00:00+00:00", "c" * 40, 9000, 1.0, passed=False),
    )
    _write(
        results,
        "load-100-20260401T000000Z-dddddddd.json",
        _load_result("2026-04-01T00:00:00+00:00", "d" * 40, 8000, 1.0, passed=False),
    )
    readme = tmp_path / "README.md"
    readme.write_text(README_TEMPLATE, encoding="utf-8")

    done = _report("--results", str(results), "--readme", str(readme))
    assert done.returncode == 0, done.stderr

    # worked by hand from the newer passed file: 2000 rows read, 1998 loaded + 2 rejected,
    # COPY 4000 rows/s in 0.50 s, ingestion 1000 rows/s in 2.00 s, 25 % of COPY
    expected_load = (
        "| clients | rows read (loaded + rejected) | batches (failed) | input "
        "| plain `COPY` rows/s | ingestion rows/s | ingestion / `COPY` "
        "| peak memory of the ingestion step | machine | measured |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| 100 | 2,000 (1,998 + 2) | 14 (0) | 0.2 MiB | 4,000 in 0.50 s | 1,000 in 2.00 s "
        "| 25% | loader 95 MiB; PostgreSQL private 45 MiB, backend 47 MiB "
        "| 2 cores Test CPU, 8 GiB, load 0.5 "
        f"| 2026-02-01, bbbbbbbb: [{new}](benchmarks/results/{new}) |\n"
    )
    expected = README_TEMPLATE.replace(
        "a figure typed in by hand\n", "\n" + expected_load + "\n"
    ).replace(
        "<!-- benchmarks:identity:start -->\n",
        "<!-- benchmarks:identity:start -->\n\n_No results file yet: run the command above._\n\n",
    )
    assert readme.read_text(encoding="utf-8") == expected
    assert old not in readme.read_text(encoding="utf-8")

    # the regenerated README checks clean; a figure edited by hand in it does not
    assert _report("--results", str(results), "--readme", str(readme), "--check").returncode == 0
    readme.write_text(expected.replace("1,000 in 2.00 s", "1,500 in 2.00 s"), encoding="utf-8")
    edited = _report("--results", str(results), "--readme", str(readme), "--check")
    assert edited.returncode == 1
    assert (
        "-| 100 | 2,000 (1,998 + 2) | 14 (0) | 0.2 MiB | 4,000 in 0.50 s | 1,500" in edited.stdout
    )
    assert (
        "+| 100 | 2,000 (1,998 + 2) | 14 (0) | 0.2 MiB | 4,000 in 0.50 s | 1,000" in edited.stdout
    )


def test_report_refuses_an_unknown_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- benchmarks:nonsense:start -->\n<!-- benchmarks:nonsense:end -->\n", encoding="utf-8"
    )
    done = _report("--results", str(tmp_path), "--readme", str(readme))
    assert done.returncode != 0
    assert "unknown benchmark table 'nonsense'" in done.stderr


def test_readme_tables_are_what_the_results_files_give():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for name in ("load", "generation", "validation", "derivation", "derivation-models", "identity"):
        assert f"<!-- benchmarks:{name}:start -->" in text, name
        assert f"<!-- benchmarks:{name}:end -->" in text, name
    results = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert results, "no results files in benchmarks/results/"
    done = _report("--check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
