"""The consent API under load: throughput and latency, alone and while runs publish.

    python -m benchmarks.api --clients 100000
    python -m benchmarks.api --clients 20000 --seconds 10 --workers 2

Generated feeds (--clients, --seed) are run through `consent-center run` once. Then
`consent-center serve --workers W` answers, and a bounded asyncio load generator (httpx, one
connection per caller) measures, each phase for --seconds:

* single can-contact: --callers concurrent callers (50 by default), each asking about a random
  known record, purpose and channel: together --rate questions a second on a fixed schedule
  (500 by default; latency counted from when each was due), then as fast as the answers come
  (the ceiling);
* batch can-contact: 10,000 questions per request, one request after the other;
* revocation POST: 20 callers revoking marketing for random records (a new request_id each);
* the change feed: 10 callers reading pages of 1,000 changes.

Then the stories the acceptance names:

* a revocation, then a can-contact for another record of the same client in the very next
  request: `allowed: false`, for 50 clients; and still so after the next run;
* during a daily run (a 1% batch, benchmarks/daily.py's) and during a full refresh, single
  can-contact keeps going (20 callers, 200 a second): its latency and every error that
  reached a caller;
  and a long-poll on the change feed (`wait`) held through each run: how long after the
  publication it woke.

Checks (any failure: exit 1): no error in any phase, none during either run, every revoked
client refused at once and after the run, the long-poll woke with the run's changes.
Figures per phase: requests, throughput, p50 / p90 / p99 / max latency (ms), errors.

Writes benchmarks/results/api-<clients>-<time>-<commit>.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg

from benchmarks.common import (
    Verification,
    benchmark_parser,
    feed_parameters,
    generation_figures,
    record_and_finish,
    scratch_database,
    server_version,
)
from benchmarks.daily import generated_installation, write_daily_batch

CONSENT_CENTER = str(Path(sys.executable).parent / "consent-center")
PURPOSES = ("marketing", "processing", "third_party_transfer")
CHANNELS = ("sms", "email", "call", "push")


def _cli(env: dict[str, str], *args: str, timeout: float = 7200) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [CONSENT_CENTER, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"consent-center {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(latencies: list[float], errors: int, seconds: float, error_kinds: dict) -> dict:
    ms = [v * 1000 for v in latencies]
    return {
        "requests": len(latencies) + errors,
        "seconds": round(seconds, 1),
        "per_second": round((len(latencies) + errors) / seconds, 1) if seconds else None,
        "p50_ms": round(percentile(ms, 0.50), 2) if ms else None,
        "p90_ms": round(percentile(ms, 0.90), 2) if ms else None,
        "p99_ms": round(percentile(ms, 0.99), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
        "errors": errors,
        "error_kinds": error_kinds,
    }


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the load generator's client.

    A general client (httpx) spends about a millisecond of CPU per request, as much as the
    server it measures, on the same two cores; this one writes the request bytes and reads the
    status line, the headers and Content-Length bytes of body, which is all an answer of this
    API is."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.key}\r\n"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


async def load(
    base: str,
    key: str,
    make_request,
    *,
    callers: int,
    seconds: float | None = None,
    until: threading.Event | None = None,
    ok=(200, 201),
    rate: float | None = None,
) -> dict:
    """`callers` concurrent loops, each with a connection of its own, sending
    make_request(n) -> (method, path with query, JSON body or None) and waiting for its answer,
    for `seconds` or until `until` is set. An error is any answer outside `ok` or a failed
    connection.

    rate: None, each caller sends its next request as soon as it has the answer (closed loop:
    the throughput the service can give, latency then being mostly queueing); else the
    callers together send `rate` requests a second on a fixed schedule (open loop, as real
    callers do), and a request's latency counts from when it was due, so that a slow answer
    delaying the next ones is counted in full (no coordinated omission)."""
    latencies: list[float] = []
    kinds: dict[str, int] = {}
    errors = 0
    stop_at = time.monotonic() + seconds if seconds else None
    host, port = base.removeprefix("http://").split(":")

    interval = callers / rate if rate else None
    origin = time.perf_counter()

    async def caller(n: int) -> None:
        nonlocal errors
        connection = Connection(host, int(port), key)
        sent = 0
        try:
            while True:
                if stop_at is not None and time.monotonic() >= stop_at:
                    return
                if until is not None and until.is_set():
                    return
                method, path, body = make_request(n * 1_000_000 + sent)
                started = time.perf_counter()
                if interval is not None:
                    due = origin + (sent + n / callers) * interval
                    if due > started:
                        await asyncio.sleep(due - started)
                    started = due
                sent += 1
                try:
                    status, payload = await connection.request(method, path, body)
                except (OSError, asyncio.IncompleteReadError, ConnectionError) as error:
                    errors += 1
                    kinds[type(error).__name__] = kinds.get(type(error).__name__, 0) + 1
                    await connection.close()
                    connection = Connection(host, int(port), key)
                    continue
                elapsed = time.perf_counter() - started
                if status in ok:
                    latencies.append(elapsed)
                else:
                    errors += 1
                    kind = f"{status} {payload[:80].decode(errors='replace')}"
                    kinds[kind] = kinds.get(kind, 0) + 1
        finally:
            await connection.close()

    began = time.monotonic()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    took = time.monotonic() - began
    return summary(latencies, errors, took, kinds)


def sample_records(url: str, count: int, seed: int) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select source, source_record_id, client_id from consent.client_xref "
            "order by md5(source || source_record_id || %s) limit %s",
            (str(seed), count),
        ).fetchall()
    return rows


def start_server(env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen(
        [CONSENT_CENTER, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - the server's own log, for the whole benchmark
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.3)
    raise RuntimeError(f"the API did not start: {log.read_text()[-2000:]}")


def question(records, rng: random.Random):
    def make(n: int):
        source, record, _ = records[rng.randrange(len(records))]
        params = {"source": source, "record": record, "purpose": rng.choice(PURPOSES),
                  "channel": rng.choice(CHANNELS)}  # fmt: skip
        return "GET", "/v1/can-contact?" + urlencode(params), None

    return make


def during_run(base, key, records, env, run_args, seed: int) -> tuple[dict, dict, float]:
    """Single can-contact load and one long-poll held while `consent-center run <run_args>`
    goes; returns the load's summary, the long-poll's outcome and the run's seconds."""
    done = threading.Event()
    outcome: dict = {}

    def run() -> None:
        began = time.monotonic()
        try:
            _cli(env, "run", *run_args)
            outcome["ok"] = True
        except RuntimeError as error:
            outcome["ok"], outcome["error"] = False, str(error)[-2000:]
        outcome["seconds"] = time.monotonic() - began
        with psycopg.connect(env["CONSENT_DATABASE_URL"]) as conn:
            (outcome["published_at"],) = conn.execute(
                "select extract(epoch from max(published_at)) from consent.publication"
            ).fetchone()
        done.set()

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        last = client.get("/v1/changes", params={"after": 0, "limit": 1}).json()
        # the feed's end: page to it
        after = last["last_change_id"]
        while True:
            page = client.get("/v1/changes", params={"after": after, "limit": 10_000}).json()
            if not page["changes"]:
                break
            after = page["last_change_id"]
    poll: dict = {}

    def long_poll() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=90) as client:  # fmt: skip
            while not done.is_set() or "woke_at" not in poll:
                body = client.get("/v1/changes", params={"after": after, "wait": 60}).json()
                if body["changes"]:
                    poll.update(woke_at=time.time(), changes=len(body["changes"]))
                    return
                if done.is_set():
                    return

    runner = threading.Thread(target=run)
    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    runner.start()
    figures = asyncio.run(
        load(base, key, question(records, random.Random(seed)), callers=20, until=done, rate=200)
    )
    runner.join()
    poller.join(timeout=120)
    return figures, {**outcome, **poll}, outcome.get("seconds", 0.0)


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], feeds=False)
    parser.add_argument("--seconds", type=float, default=20, help="length of each load phase")
    parser.add_argument("--callers", type=int, default=50, help="concurrent single callers")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument(
        "--logs", type=Path, default=None,
        help="folder kept for the server's log (serve.log); by default it goes with the scratch",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=500, help="single can-contact questions a second, all callers"
    )
    args = parser.parse_args()
    args.feeds = None
    started_at = datetime.now(UTC)
    check = Verification()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="consent-api-") as scratch, scratch_database() as url:
        root = Path(scratch)
        generation, landing, day, env = generated_installation(root, url, args)
        began = time.monotonic()
        _cli(env, "run")
        full_run_s = time.monotonic() - began
        keys = {
            role: _cli(env, "api-key", "create", "--name", f"bench-{role}", "--role", role)
            .stdout.strip()
            .splitlines()[-1]
            for role in ("system", "marketing")
        }
        logs = args.logs or root
        logs.mkdir(parents=True, exist_ok=True)
        server, base = start_server(env, args.workers, logs / "serve.log")
        try:
            records = sample_records(url, 20_000, args.seed)
            phases: dict[str, dict] = {}
            # warm every worker's pool and caches
            asyncio.run(load(base, keys["system"], question(records, rng), callers=8, seconds=3))
            # 50 callers together asking 500 questions a second (open loop: the acceptance's
            # figure), then as fast as the answers come (closed loop: the ceiling)
            phases["single_can_contact_500_per_s"] = asyncio.run(
                load(base, keys["system"], question(records, rng), callers=args.callers,
                     seconds=args.seconds, rate=args.rate)
            )  # fmt: skip
            phases["single_can_contact_closed_loop"] = asyncio.run(
                load(base, keys["system"], question(records, rng), callers=args.callers,
                     seconds=args.seconds)
            )  # fmt: skip

            def batch(n: int):
                chosen = [records[rng.randrange(len(records))] for _ in range(10_000)]
                body = {"questions": [
                    {"source": s, "record": r, "purpose": "marketing", "channel": "sms"}
                    for s, r, _ in chosen
                ]}  # fmt: skip
                return "POST", "/v1/can-contact", json.dumps(body).encode()

            phases["batch_can_contact_10000"] = asyncio.run(
                load(base, keys["marketing"], batch, callers=1, seconds=args.seconds)
            )

            def revoke(n: int):
                source, record, _ = records[rng.randrange(len(records))]
                body = {"source": source, "record": record, "purposes": ["marketing"],
                        "channels": "all", "received_via": "app",
                        "request_id": f"bench-{n}-{rng.random()}"}  # fmt: skip
                return "POST", "/v1/revocations", json.dumps(body).encode()

            phases["revocation_post"] = asyncio.run(
                load(base, keys["system"], revoke, callers=20, seconds=args.seconds)
            )

            def feed(n: int):
                after = rng.randrange(1000)
                return "GET", f"/v1/changes?after={after}&limit=1000", None

            phases["changes_page_1000"] = asyncio.run(
                load(base, keys["system"], feed, callers=10, seconds=args.seconds)
            )
            # a revocation, then the very next request about another record of the client
            refused_at_once, stories = 0, []
            by_client: dict[str, list[tuple[str, str]]] = {}
            with psycopg.connect(url) as conn:
                for source, record, client in conn.execute(
                    "select source, source_record_id, client_id from consent.client_xref "
                    "where client_id in (select client_id from consent.client_xref "
                    "group by client_id having count(*) > 1 order by md5(client_id) limit 50)"
                ):
                    by_client.setdefault(client, []).append((source, record))
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {keys['system']}"}
            ) as client:
                for n, (_client, recs) in enumerate(sorted(by_client.items())):
                    (s1, r1), (s2, r2) = recs[0], recs[1]
                    posted = client.post("/v1/revocations", json={
                        "source": s1, "record": r1, "purposes": ["marketing"], "channels": "all",
                        "received_via": "call_centre", "request_id": f"story-{n}"})  # fmt: skip
                    answer = client.get("/v1/can-contact", params={
                        "source": s2, "record": r2, "purpose": "marketing",
                        "channel": "sms"}).json()  # fmt: skip
                    refused_at_once += posted.status_code == 201 and answer["allowed"] is False
                    stories.append((s2, r2))
            check.equal("revoked clients refused in the very next request", refused_at_once,
                        len(by_client))  # fmt: skip
            # a daily run and a full refresh, with callers asking throughout
            with psycopg.connect(url, autocommit=True) as conn:
                write_daily_batch(conn, landing, 0.01, day)
            daily_load, daily_poll, daily_s = during_run(
                base, keys["system"], records, env, (), args.seed
            )
            phases["single_during_daily_run"] = daily_load
            check.check("the daily run succeeds", daily_poll.get("ok"), daily_poll.get("error"))
            check.equal("no error reached a caller during the daily run", daily_load["errors"], 0)
            refresh_load, refresh_poll, refresh_s = during_run(
                base, keys["system"], records, env, ("--full-refresh",), args.seed
            )
            phases["single_during_full_refresh"] = refresh_load
            check.check("the full refresh succeeds", refresh_poll.get("ok"),
                        refresh_poll.get("error"))  # fmt: skip
            check.equal("no error reached a caller during the full refresh",
                        refresh_load["errors"], 0)  # fmt: skip
            # the daily run's changes wake the long-poll; the full refresh publishes the same
            # state, so it tells no change at all
            woke = daily_poll.get("woke_at")
            check.check("the long-poll woke with the daily run's changes", woke is not None,
                        daily_poll)  # fmt: skip
            at = float(daily_poll.get("published_at") or 0)
            wake = {"daily_run": round(woke - at, 2) if woke else None}
            check.equal("the full refresh tells no change", refresh_poll.get("changes"), None)
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {keys['system']}"}
            ) as client:
                still = sum(
                    client.get("/v1/can-contact", params={
                        "source": s, "record": r, "purpose": "marketing", "channel": "sms"
                    }).json()["allowed"] is False
                    for s, r in stories
                )  # fmt: skip
            check.equal("revoked clients still refused after the runs", still, len(stories))
            for name, figures in phases.items():
                if name not in ("single_during_daily_run", "single_during_full_refresh"):
                    check.equal(f"no error in {name}", figures["errors"], 0)
        finally:
            server.terminate()
            server.wait(timeout=60)
        pg_version = server_version(url)
    figures = {
        "phases": phases,
        "full_run_s": round(full_run_s, 1),
        "daily_run_s": round(daily_s, 1),
        "full_refresh_s": round(refresh_s, 1),
        "long_poll_woke_after_publication_s": wake,
        "workers": args.workers,
        "callers": args.callers,
        "generation": generation_figures(generation),
    }
    record_and_finish(
        "api",
        args,
        feed_parameters(
            args, seconds=args.seconds, callers=args.callers, workers=args.workers, rate=args.rate
        ),
        figures,
        check,
        pg_version=pg_version,
        started_at=started_at,
    )


if __name__ == "__main__":
    main()
