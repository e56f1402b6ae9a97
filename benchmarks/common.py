"""Shared pieces of the benchmark scripts.

Every benchmark prepares, measures, checks and records its run in the same way, so that their
results files compare (and `python -m benchmarks.report` reads them all alike); what they share
lives here once, not in four copies that could drift apart.

- `benchmark_parser`, `feeds_or_generated`: the command line every benchmark takes (--clients,
  --seed, --feeds, --results-dir) and the landing zone it names or the generator writes.
- `scratch_database`: a fresh database on the configured server, dropped afterwards.
- `load_feeds`, `build_staging`, `stage_feeds`: the product's loader and dbt staging, the
  preparation (never measured) the benchmarks of later steps start from.
- `run_measured`: runs one measured step in a fresh child process (spawned, so it holds nothing
  of the generator or of earlier steps) and returns its result, its wall time and its peak
  memory (see `StepMemory`).
- `Verification`: the checks a benchmark makes of its own result; a failed check makes the
  benchmark exit non-zero.
- `write_result`: the JSON file under benchmarks/results/ that `python -m benchmarks.report`
  turns into the README's tables (machine, commit, command line, date, figures, checks);
  `record_and_finish` writes it, prints the figures and exits as the checks say.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pipelines.database import create_database, database_url

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULT_SCHEMA = 1
MIB = 2**20


@contextlib.contextmanager
def scratch_database(keep: bool = False) -> Iterator[str]:
    """A fresh database on the configured server, dropped afterwards unless `keep`."""
    admin_url = database_url()
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        create_database(admin, name)
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'drop database if exists "{name}" with (force)')


# --- peak memory of one step ------------------------------------------------------------------


def server_pid(url: str) -> int | None:
    """The PostgreSQL postmaster's process id, when it runs on this machine and is visible."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            backend = conn.execute("select pg_backend_pid()").fetchone()[0]
            return psutil.Process(backend).ppid()  # while the backend still exists
    except (psutil.Error, psycopg.Error):
        return None


def vmhwm_bytes(pid: int | str) -> int | None:
    """VmHWM of a process in bytes: the peak RSS of its address space since its last exec
    (unlike getrusage's ru_maxrss, which keeps the peak of the process it was forked from).
    None when /proc does not say (the process is gone, or not visible from here).

    One reading for every peak a benchmark reports: the measured step's own, its
    subprocesses' (dbt) and a PostgreSQL backend's (load_throughput)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _hwm(pid: int | str) -> int:
    """VmHWM in bytes, 0 when unknown (the sampler keeps maxima)."""
    return vmhwm_bytes(pid) or 0


class _Sampler(threading.Thread):
    """Samples, every `interval` s, the summed RSS of this process and all its descendants (and
    the VmHWM of each), and, when `pg_pid` is given, the summed private memory (USS) of the
    PostgreSQL server's processes."""

    def __init__(self, pg_pid: int | None, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.pg = psutil.Process(pg_pid) if pg_pid else None
        self.me = psutil.Process()
        self.tree_peak = 0
        self.children_hwm = 0
        self.pg_peak = 0
        self.pg_baseline: int | None = None
        self.samples = 0
        self._halt = threading.Event()

    def _tree_rss(self) -> int:
        total = self.me.memory_info().rss
        for proc in self.me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
                self.children_hwm = max(self.children_hwm, _hwm(proc.pid))
        return total

    def _pg_private(self) -> int:
        total = 0
        for proc in [self.pg, *self.pg.children()]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_full_info().uss
        return total

    def sample(self) -> None:
        self.tree_peak = max(self.tree_peak, self._tree_rss())
        if self.pg is not None:
            with contextlib.suppress(psutil.Error):
                private = self._pg_private()
                if self.pg_baseline is None:
                    self.pg_baseline = private
                self.pg_peak = max(self.pg_peak, private)
        self.samples += 1

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


@dataclass
class StepMemory:
    """Peak memory of one measured step, in MiB.

    The step runs in a fresh process that does nothing else (its imports aside): the generator
    and the preparation ran in other processes.

    - `tree_peak_mib`: the largest summed RSS of the step's process and its subprocesses (dbt),
      sampled every 50 ms, and never below either figure below.
    - `self_hwm_mib`: the step's process's own peak RSS (VmHWM, exact).
    - `children_hwm_mib`: the largest peak RSS (VmHWM) seen of any of its subprocesses (dbt),
      read while they ran (growth in a subprocess's last 50 ms can be missed).
    - `pg_private_peak_mib` / `pg_private_baseline_mib`: the summed private memory (USS) of
      every process of the PostgreSQL server (postmaster, backends, workers) at its peak during
      the step and at its start, sampled every 50 ms; shared buffers are not in it. None
      when the server's processes are not visible from here.
    """

    tree_peak_mib: float
    self_hwm_mib: float
    children_hwm_mib: float
    pg_private_peak_mib: float | None = None
    pg_private_baseline_mib: float | None = None
    samples: int = 0


def _child(fn: Callable, args: tuple, pg_pid: int | None, queue) -> None:
    try:
        sampler = _Sampler(pg_pid)
        sampler.sample()
        sampler.start()
        started = time.perf_counter()
        value = fn(*args)
        seconds = time.perf_counter() - started
        sampler.stop()
        own = _hwm("self")
        memory = StepMemory(
            tree_peak_mib=round(max(sampler.tree_peak, own, sampler.children_hwm) / MIB, 1),
            self_hwm_mib=round(own / MIB, 1),
            children_hwm_mib=round(sampler.children_hwm / MIB, 1),
            pg_private_peak_mib=round(sampler.pg_peak / MIB, 1) if pg_pid else None,
            pg_private_baseline_mib=(
                round(sampler.pg_baseline / MIB, 1) if sampler.pg_baseline is not None else None
            ),
            samples=sampler.samples,
        )
        queue.put(("ok", value, seconds, memory))
    except BaseException as error:  # reported to the parent, which raises it
        import traceback

        queue.put(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def run_measured(fn: Callable, *args, pg_url: str | None = None) -> tuple[Any, float, StepMemory]:
    """Run `fn(*args)` in a fresh spawned process; returns (its value, seconds, memory).

    `fn` must be a module-level function and its value picklable. The time is that of the call
    alone (not of the interpreter's start or the imports). With `pg_url`, the server's private
    memory is sampled too (see StepMemory).
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    pg_pid = server_pid(pg_url) if pg_url else None
    process = context.Process(target=_child, args=(fn, args, pg_pid, queue))
    process.start()
    try:
        message = queue.get()
    finally:
        process.join()
    if message[0] == "error":
        raise RuntimeError(f"measured step {fn.__name__} failed in its process: {message[1]}")
    _, value, seconds, memory = message
    return value, seconds, memory


# --- preparation: feeds, loading, staging -----------------------------------------------------


def copy_file_into(copy: psycopg.Copy, path: Path) -> None:
    """Stream a file into a running COPY in 8 MiB blocks: feeds of a million clients are
    larger than the memory a benchmark should hold, and reading them whole would add to the
    very peak it measures."""
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            copy.write(block)


def benchmark_parser(
    description: str,
    *,
    clients: int = 100_000,
    seed: int = 1,
    clients_help: str | None = None,
    feeds: bool = True,
) -> argparse.ArgumentParser:
    """The options every benchmark takes: --clients and --seed of the generated feeds,
    --feeds (an existing landing zone instead; not where the feeds must be fresh) and
    --results-dir. One definition, so that the same words mean the same run in every
    benchmark's command line (the results file records that command line)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clients", type=int, default=clients, help=clients_help)
    parser.add_argument("--seed", type=int, default=seed)
    if feeds:
        parser.add_argument("--feeds", type=Path, help="existing landing zone (skips generation)")
    add_results_argument(parser)
    return parser


def feeds_or_generated(
    args: argparse.Namespace, scratch: Path, folder: str, **config: Any
) -> tuple[Path, dict | None]:
    """The landing zone of `--feeds`, or one the generator writes into `scratch / folder` for
    --clients and --seed (and `config`); with the generation's figures (None for --feeds)."""
    if args.feeds is not None:
        return args.feeds, None
    landing = scratch / folder
    return landing, generate_feeds(landing, clients=args.clients, seed=args.seed, **config)


def generate_feeds(out: Path, **config) -> dict:
    """The generator's feeds, written by a child process (its memory is never measured)."""
    value, seconds, memory = run_measured(_generate, out, config)
    value["seconds"] = round(seconds, 2)
    value["peak_rss_mib"] = memory.self_hwm_mib
    return value


def _generate(out: Path, config: dict) -> dict:
    from sources.generator import GeneratorConfig, generate

    return generate(out, GeneratorConfig(**config)).as_dict()


#: what of the generator's figures a results file keeps
GENERATION_FIGURES = ("seconds", "peak_rss_mib", "bad_rows", "sources")


def generation_figures(generation: dict | None) -> dict | None:
    """The generation's figures a results file records (None when the feeds were given)."""
    return {k: generation[k] for k in GENERATION_FIGURES} if generation else None


def load_feeds(conn: psycopg.Connection, landing: Path) -> None:
    """The product's loader over every complete batch of `landing`. Raises when a batch did
    not load: a benchmark over part of its feeds would report figures of data it never had."""
    from sources.loader import load_landing_zone

    results = load_landing_zone(conn, landing)
    failed = [f"{r.source}/{r.batch_id}" for r in results if r.status != "loaded"]
    if failed:
        raise RuntimeError(f"batches failed to load: {failed}")


def build_staging(url: str) -> float:
    """`dbt build --select staging`, as the product stages; its seconds (to 0.1 s)."""
    from pipelines.dbt_cli import run_dbt

    started = time.perf_counter()
    run_dbt(url, "build", "--select", "staging")
    return round(time.perf_counter() - started, 1)


def stage_feeds(url: str, landing: Path) -> dict:
    """Load and stage `landing` as the product does (not measured): a new schema, the loader,
    the phone table, dbt's staging. Returns load_seconds (schema, loader, phones) and
    staging_build_seconds."""
    from sources.phones import refresh_phone_numbers
    from sources.schema import ensure_schema

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        load_feeds(conn, landing)
        refresh_phone_numbers(conn)
    load_seconds = round(time.perf_counter() - started, 1)
    return {"load_seconds": load_seconds, "staging_build_seconds": build_staging(url)}


# --- verification -----------------------------------------------------------------------------


@dataclass
class Verification:
    """Named checks of a benchmark's own result. Any failed check: the benchmark exits 1."""

    checks: list[dict] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: Any = None) -> bool:
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail})
        return bool(passed)

    def equal(self, name: str, got: Any, expected: Any) -> bool:
        """got == expected; long lists are recorded by length and first differences only."""
        if (
            isinstance(got, list)
            and isinstance(expected, list)
            and max(len(got), len(expected)) > 20
        ):
            differ = [i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b]
            detail = {
                "got_items": len(got),
                "expected_items": len(expected),
                "first_differences": [
                    {"index": i, "got": got[i], "expected": expected[i]} for i in differ[:5]
                ],
            }
        else:
            detail = {"got": got, "expected": expected}
        return self.check(name, got == expected, detail)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "checks": self.checks}


# --- the results file -------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.rstrip("\n")
    except (OSError, subprocess.CalledProcessError):
        return ""


def git_state() -> dict:
    """HEAD's commit and the tracked files that differ from it (the run measured those too)."""
    changed = [
        line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    return {"commit": _git("rev-parse", "HEAD") or None, "modified_tracked_files": changed}


def machine() -> dict:
    cpu_model = platform.processor() or None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": cpu_model,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def server_version(url: str) -> str | None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url) as conn:
        return conn.execute("show server_version").fetchone()[0]
    return None


def command_line() -> str:
    module = sys.modules["__main__"].__spec__
    name = module.name if module is not None else sys.argv[0]
    return " ".join(["python -m", name, *sys.argv[1:]])


def write_result(
    benchmark: str,
    size: str,
    parameters: dict,
    figures: dict,
    verification: Verification,
    *,
    pg_version: str | None = None,
    results_dir: Path = RESULTS_DIR,
    started_at: datetime | None = None,
) -> Path:
    """Write the run as JSON; a run that failed its checks gets a `-FAILED` name (the report
    never shows it). Returns the path."""
    now = datetime.now(UTC)
    git = git_state()
    payload = {
        "schema": RESULT_SCHEMA,
        "benchmark": benchmark,
        "size": size,
        "date": now.isoformat(timespec="seconds"),
        "started_at": (started_at or now).isoformat(timespec="seconds"),
        "command": command_line(),
        "git": git,
        "machine": {**machine(), "postgresql": pg_version},
        "parameters": parameters,
        "figures": figures,
        "verification": verification.as_dict(),
    }
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    commit = (git["commit"] or "nocommit")[:8]
    suffix = "" if verification.passed else "-FAILED"
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{benchmark}-{size}-{stamp}-{commit}{suffix}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where the results JSON goes (default benchmarks/results/, read by the report)",
    )


def finish(path: Path, verification: Verification) -> None:
    """Print where the figures went and the failed checks; exit 1 if any check failed."""
    print(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    for check in verification.checks:
        if not check["passed"]:
            print(f"CHECK FAILED: {check['name']}: {check['detail']}", file=sys.stderr)
    if not verification.passed:
        sys.exit(1)


def result_size(args: argparse.Namespace) -> str:
    """The size a results file is filed under: the clients generated, or `feeds` for --feeds
    (the report shows one row per size)."""
    return str(args.clients) if getattr(args, "feeds", None) is None else "feeds"


def feed_parameters(args: argparse.Namespace, **parameters: Any) -> dict:
    """The run's parameters as a results file records them: clients and seed (None for
    --feeds), the benchmark's own `parameters`, and where the feeds came from."""
    return {
        "clients": args.clients if args.feeds is None else None,
        "seed": args.seed if args.feeds is None else None,
        **parameters,
        "feeds": str(args.feeds) if args.feeds else "generated into a fresh temporary folder",
    }


def record_and_finish(
    benchmark: str,
    args: argparse.Namespace,
    parameters: dict,
    figures: dict,
    verification: Verification,
    *,
    pg_version: str | None,
    started_at: datetime,
    hide: tuple[str, ...] = (),
) -> None:
    """The end of every benchmark: its results file (see `write_result`; filed under
    `result_size(args)` in --results-dir), its figures printed (less the long ones in `hide`),
    then `finish`: exit 1 if any check failed."""
    path = write_result(
        benchmark,
        result_size(args),
        parameters,
        figures,
        verification,
        pg_version=pg_version,
        started_at=started_at,
        results_dir=args.results_dir,
    )
    shown = {k: v for k, v in figures.items() if k not in hide}
    print(json.dumps(shown, indent=2, ensure_ascii=False, default=str))
    finish(path, verification)
