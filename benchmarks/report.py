"""The README's benchmark tables, generated from the results files in benchmarks/results/.

    python -m benchmarks.report            # rewrite the tables in README.md
    python -m benchmarks.report --check    # exit 1 if README.md's tables differ from the files

Each table lives between two marker comments in the README,
`<!-- benchmarks:NAME:start -->` and `<!-- benchmarks:NAME:end -->`; everything between them is
replaced. A table has one row per benchmark size, from the newest results file of that size
whose checks passed (files named `-FAILED`, or whose verification did not pass, are never
shown). Every row names its results file, so no figure in these tables is typed in.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import REPO, RESULT_SCHEMA, RESULTS_DIR

README = REPO / "README.md"
MARKER = re.compile(
    r"(<!-- benchmarks:(?P<name>[a-z-]+):start -->\n)(?P<body>.*?)"
    r"(<!-- benchmarks:(?P=name):end -->)",
    re.DOTALL,
)


# --- reading ----------------------------------------------------------------------------------


def load_results(folder: Path) -> list[dict]:
    """Every passed results file of the current schema, each with its `_file` name."""
    results = []
    for path in sorted(folder.glob("*.json")):
        if path.stem.endswith("-FAILED"):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != RESULT_SCHEMA or not data.get("verification", {}).get("passed"):
            continue
        data["_file"] = path.name
        results.append(data)
    return results


def newest_per_size(results: list[dict], benchmark: str) -> list[dict]:
    """The newest result of each size of one benchmark, smallest size first."""
    newest: dict[str, dict] = {}
    for r in results:
        if r["benchmark"] != benchmark:
            continue
        if r["size"] not in newest or (r["date"], r["_file"]) > (
            newest[r["size"]]["date"],
            newest[r["size"]]["_file"],
        ):
            newest[r["size"]] = r
    return sorted(newest.values(), key=lambda r: (_size_key(r["size"]), r["size"]))


def _size_key(size: str) -> int:
    return int(size) if size.isdigit() else sys.maxsize


# --- formatting -------------------------------------------------------------------------------


def n(value) -> str:
    """An integer with thousands separators; '-' for none."""
    return "-" if value is None else f"{int(value):,}"


def s(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def mib(value) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"


def size_label(r: dict) -> str:
    return n(r["size"]) if r["size"].isdigit() else r["parameters"].get("feeds", r["size"])


def machine(r: dict) -> str:
    m = r["machine"]
    load = m.get("load_average_at_start")
    busy = f", load {load[0]:.1f}" if load else ""
    return f"{m['cores']} cores {m['cpu_model']}, {m['memory_gib']:.0f} GiB{busy}"


def source(r: dict) -> str:
    commit = (r["git"].get("commit") or "")[:8]
    return f"{r['date'][:10]}, {commit}: [{r['_file']}](benchmarks/results/{r['_file']})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


NO_RESULTS = "_No results file yet: run the command above._\n"


def per_size_table(
    benchmark: str, header: list[str], row: Callable[[dict], list[str] | None]
) -> Callable[[list[dict]], str]:
    """A table of one row per size of `benchmark` (its newest passed result, smallest size
    first; `row` returns None to leave a result out), or NO_RESULTS. Every such table ends with
    the machine that measured the row and the results file it comes from: those two columns
    are added here, so that every table picks, orders and sources its results files alike."""

    def render_table(results: list[dict]) -> str:
        rows = [
            [*cells, machine(r), source(r)]
            for r in newest_per_size(results, benchmark)
            if (cells := row(r)) is not None
        ]
        return table([*header, "machine", "measured"], rows) if rows else NO_RESULTS

    return render_table


# --- the tables -------------------------------------------------------------------------------

LOAD_HEADER = [
    "clients",
    "rows read (loaded + rejected)",
    "batches (failed)",
    "input",
    "plain `COPY` rows/s",
    "ingestion rows/s",
    "ingestion / `COPY`",
    "peak memory of the ingestion step",
]


def _load_row(r: dict) -> list[str]:
    f = r["figures"]
    m = f["memory"]
    ratio = f["ratio_to_plain_copy"]
    return [
        size_label(r),
        f"{n(f['rows_read'])} ({n(f['rows_loaded'])} + {n(f['rows_rejected'])})",
        f"{f['batches']} ({f['batches_failed']})",
        f"{f['input_mib']:.1f} MiB",
        f"{n(f['plain_copy_rows_per_s'])} in {s(f['plain_copy_seconds'], 2)}",
        f"{n(f['ingest_rows_per_s'])} in {s(f['ingest_seconds'], 2)}",
        "-" if ratio is None else f"{ratio:.0%}",
        f"loader {mib(m['tree_peak_mib'])}; PostgreSQL private "
        f"{mib(m['pg_private_peak_mib'])}, backend {mib(m['pg_backend_vmhwm_mib'])}",
    ]


GENERATION_HEADER = ["clients", "feed rows", "size", "time", "peak memory"]


def _generation_row(r: dict) -> list[str] | None:
    g = r["figures"].get("generation")
    if not g:
        return None
    return [
        size_label(r),
        n(r["figures"]["rows_read"]),
        f"{r['figures']['input_mib']:.1f} MiB",
        s(g["seconds"]),
        mib(g.get("peak_rss_mib")) if g.get("peak_rss_mib") else "not measured",
    ]


VALIDATION_HEADER = [
    "clients",
    "staged rows (web consents / contracts / CRM ticks)",
    "validation runs",
    "first run: suites + writes",
    "rows flagged",
    "generator bad rows flagged",
    "peak memory of a validation run",
]


def _validation_row(r: dict) -> list[str]:
    f = r["figures"]
    staged = f["staged_rows"]
    first = f["validation_breakdown"][0]
    runs = f["memory"]["runs"]
    return [
        size_label(r),
        " / ".join(
            n(staged[k]) for k in ("web_event_consents", "crm_contracts", "crm_consent_flags")
        ),
        ", ".join(s(t) for t in f["validation_seconds"]),
        f"{s(first.get('suites'))} + {s(first.get('write'))}",
        n(sum(f["rows_flagged"].values())),
        f"{n(f['generator_bad_rows_for_validation'])} of "
        f"{n(f['generator_bad_rows_for_validation'])}",
        f"validation {mib(max(m['tree_peak_mib'] for m in runs))}; PostgreSQL private "
        f"{mib(max(m['pg_private_peak_mib'] or 0 for m in runs) or None)}",
    ]


DERIVATION_HEADER = [
    "clients",
    "consent events",
    "history rows",
    "`dbt build`: to golden_consent / whole",
    "expected statuses matched",
    "lookup p50 / p99",
    "segment",
    "peak memory of the `dbt build`",
]


def _derivation_row(r: dict) -> list[str]:
    f = r["figures"]
    m = f["memory"]
    return [
        size_label(r),
        n(f["consent_events"]),
        n(f["history_rows"]),
        f"{s(f['consent_models_seconds'])} / {s(f['derivation_seconds'])} "
        f"({f['models']} models, {f['tests']} tests)",
        f"{n(f['expected_status_matched'])} / {n(f['expected_status_questions'])}",
        f"{f['lookup_p50_ms']:.2f} / {f['lookup_p99_ms']:.2f} ms",
        f"{n(f['segment_records'])} in {s(f['segment_seconds'], 2)}",
        f"dbt {mib(m['children_hwm_mib'])}; PostgreSQL private {mib(m['pg_private_peak_mib'])}",
    ]


def derivation_models_table(results: list[dict], top: int = 10) -> str:
    """dbt's per-model times of the largest measured derivation."""
    sized = newest_per_size(results, "derivation")
    if not sized:
        return NO_RESULTS
    r = sized[-1]
    models = list(r["figures"]["model_seconds"].items())[:top]
    lines = table(
        [f"model ({size_label(r)} clients, the {top} slowest)", "seconds"],
        [[f"`{name}`", f"{t:.1f}"] for name, t in models],
    )
    return lines + f"\nFrom {source(r)}.\n"


IDENTITY_HEADER = [
    "data set",
    "records",
    "precision",
    "recall",
    "F1",
    "resolve time",
    "peak memory (read + resolve)",
]


def _identity_row(r: dict) -> list[str]:
    f, p = r["figures"], r["parameters"]
    t = p["model_trained_on"]
    return [
        f"generator, {n(p['clients'])} clients: persons {p['scored_persons']}, "
        f"seed {p['seed']} (model trained on {n(t['clients'])} clients, seed {t['seed']})",
        n(f["records"]),
        f"{f['precision']:.4f}",
        f"{f['recall']:.4f}",
        f"{f['f1']:.4f}",
        s(f["resolve_seconds"]),
        mib(f["memory"]["tree_peak_mib"]),
    ]


DAILY_HEADER = [
    "clients",
    "daily batch (clients, rows)",
    "full run",
    "daily run",
    "daily / full",
    "full refresh",
    "same state after the full refresh",
    "peak memory: full / daily",
]


def _daily_row(r: dict) -> list[str]:
    f = r["figures"]
    batch = f["daily_batch"]
    same = next(
        (c["passed"] for c in r["verification"]["checks"] if c["name"].startswith("the full")),
        None,
    )
    return [
        size_label(r),
        f"{n(batch['clients'])}, {n(sum(batch['rows'].values()))}",
        s(f["full_run_s"]),
        s(f["daily_run_s"]),
        f"{f['daily_over_full']:.2f}",
        s(f["full_refresh_s"]),
        "yes (EXCEPT ALL, every published table)" if same else "no",
        f"{mib(f['peak_memory_mib']['full_run'])} / {mib(f['peak_memory_mib']['daily_run'])}",
    ]


API_HEADER = [
    "clients",
    "single can-contact, 50 callers at 500/s: p50 / p99",
    "single, as fast as answered: per second (p99)",
    "batch of 10,000: seconds",
    "revocation POST: per second (p99)",
    "during the daily run: p99, errors",
    "during the full refresh: p99, errors",
]


def _latency(phase: dict) -> str:
    return f"{s(phase['p50_ms'])} / {s(phase['p99_ms'])} ms"


def _api_row(r: dict) -> list[str]:
    phases = r["figures"]["phases"]
    single = phases["single_can_contact_500_per_s"]
    ceiling = phases["single_can_contact_closed_loop"]
    batch = phases["batch_can_contact_10000"]
    revoke = phases["revocation_post"]
    daily = phases["single_during_daily_run"]
    refresh = phases["single_during_full_refresh"]
    return [
        size_label(r),
        f"{_latency(single)} ({s(single['per_second'], 0)}/s)",
        f"{s(ceiling['per_second'], 0)} ({s(ceiling['p99_ms'])} ms)",
        f"{batch['p50_ms'] / 1000:.2f} (p50), {batch['max_ms'] / 1000:.2f} (max)",
        f"{s(revoke['per_second'], 0)} ({s(revoke['p99_ms'])} ms)",
        f"{s(daily['p99_ms'])} ms, {daily['errors']} of {n(daily['requests'])}",
        f"{s(refresh['p99_ms'])} ms, {refresh['errors']} of {n(refresh['requests'])}",
    ]


TABLES: dict[str, Callable[[list[dict]], str]] = {
    "api": per_size_table("api", API_HEADER, _api_row),
    "load": per_size_table("load", LOAD_HEADER, _load_row),
    "generation": per_size_table("load", GENERATION_HEADER, _generation_row),
    "validation": per_size_table("validation", VALIDATION_HEADER, _validation_row),
    "derivation": per_size_table("derivation", DERIVATION_HEADER, _derivation_row),
    "derivation-models": derivation_models_table,
    "identity": per_size_table("identity", IDENTITY_HEADER, _identity_row),
    "daily": per_size_table("daily", DAILY_HEADER, _daily_row),
}


def render(text: str, results: list[dict]) -> str:
    """`text` with every marked table replaced; an unknown table name is an error."""

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise ValueError(f"unknown benchmark table {name!r} in the README")
        # blank lines around the table: no Markdown reader takes a marker for a table row
        return match.group(1) + "\n" + TABLES[name](results) + "\n" + match.group(4)

    return MARKER.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the tables differ"
    )
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    names = [m.group("name") for m in MARKER.finditer(text)]
    if not names:
        print(f"no benchmark tables marked in {args.readme}", file=sys.stderr)
        return 1
    rendered = render(text, load_results(args.results))
    if args.check:
        if rendered != text:
            import difflib

            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(True), rendered.splitlines(True), "README", "report"
                )
            )
            print(
                "the README's benchmark tables differ from benchmarks/results/: "
                "run python -m benchmarks.report",
                file=sys.stderr,
            )
            return 1
        return 0
    if rendered != text:
        args.readme.write_text(rendered, encoding="utf-8")
    print(f"{args.readme}: tables {', '.join(names)} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
