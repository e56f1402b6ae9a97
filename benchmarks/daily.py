"""The daily run: what a day's batch costs next to a full run, and that it reaches the same state.

    CONSENT_HOME=/tmp/bench python -m benchmarks.daily --clients 100000
    python -m benchmarks.daily --clients 20000 --share 0.01

Generated feeds (--clients, --seed) are run through `consent-center run` once (the full run,
at day D). Then a daily batch touching --share of the clients (1% by default) lands, made from
what the installation holds for them: helpdesk revocation letters quoting their contracts, CRM
updates (cards re-sent, consent ticks set to false), web withdrawals on their accounts and new
web registrations, and one partner file of refusals. `consent-center run` loads and derives it
(the daily run, at D + 1 day: only the clients it reaches). Then `consent-center run
--rederive` derives every client again over the same identity, and last `consent-center run
--full-refresh` derives everything again from every batch, identity included (both at the same
instant).

Each of the three runs is the console script in a fresh process, timed end to end, with the
peak memory of its whole process tree (benchmarks/common.py, StepMemory).

Checks (any failure: exit 1): every run succeeds with no failed batch; every row of the daily
batch is loaded; every letter's client reads `revoked` for marketing by call in golden_consent;
the daily run's change feed tells each key at most once; the daily run derived incrementally;
and the rederive and the full refresh each publish exactly the daily run's state: every
published table, EXCEPT ALL both ways (wall-clock columns aside).
Figures: the three times, the ratio daily / full, each run's peak memory, and the seconds of
each Dagster step of each run (where a daily run's time goes).

Writes benchmarks/results/daily-<clients>-<time>-<commit>.json.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.common import (
    Verification,
    benchmark_parser,
    feed_parameters,
    generate_feeds,
    generation_figures,
    record_and_finish,
    run_measured,
    scratch_database,
    server_version,
)
from benchmarks.published_state import differences, snapshot

CONSENT_CENTER = str(Path(sys.executable).parent / "consent-center")


def cli_run(env: dict[str, str], *args: str) -> dict:
    """The measured step: `consent-center run [args]` to its end, in a process of its own."""
    started = datetime.now(UTC).timestamp()
    done = subprocess.run(
        [CONSENT_CENTER, "run", *args], env=env, capture_output=True, text=True, timeout=7200
    )
    return {
        "returncode": done.returncode,
        "stdout": done.stdout[-4000:],
        "stderr": done.stderr[-4000:],
        "steps": step_seconds(Path(env["CONSENT_HOME"]) / "dagster", started),
        "identity": identity_figures(Path(env["CONSENT_HOME"]) / "dagster", started),
    }


def identity_figures(dagster_home: Path, since: float) -> dict:
    """Identity resolution's own account of the run (the client_xref materialisation's
    metadata): records scored, pairs scored and kept, seconds per phase."""
    from dagster import AssetKey, DagsterInstance, RunsFilter

    keep = ("records", "scored_records", "scored_pairs", "pairs_kept", "incremental", "timings_s")
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(RunsFilter(created_after=datetime.fromtimestamp(since, UTC)))
        for run in runs:
            for record in instance.get_records_for_run(run.run_id).records:
                event = record.event_log_entry.dagster_event
                if event is None or not event.is_step_materialization:
                    continue
                materialization = event.step_materialization_data.materialization
                if materialization.asset_key == AssetKey(["consent", "client_xref"]):
                    return {k: v.value for k, v in materialization.metadata.items() if k in keep}
    return {}


def step_seconds(dagster_home: Path, since: float) -> dict[str, float]:
    """Where a run's time went: seconds per Dagster step of the runs it started (ingestion
    steps summed over the batches), read back from the installation's Dagster instance."""
    from dagster import DagsterInstance, RunsFilter

    seconds: dict[str, float] = {}
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs(RunsFilter(created_after=datetime.fromtimestamp(since, UTC))):
            for step in instance.get_run_step_stats(run.run_id):
                if step.start_time and step.end_time:
                    key = step.step_key
                    seconds[key] = seconds.get(key, 0.0) + step.end_time - step.start_time
    return {key: round(value, 1) for key, value in sorted(seconds.items(), key=lambda kv: -kv[1])}


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


def _seal(folder: Path) -> None:
    (folder / "_SUCCESS").touch()


def write_daily_batch(conn: psycopg.Connection, landing: Path, share: float, day: date) -> dict:
    """A day's batch for `share` of the clients, from what the installation holds for them.

    The clients are a deterministic sample (md5 order); each gets one kind of change, by its
    rank: a revocation letter, a CRM update (card and a tick set to false), a web withdrawal or
    a web registration (each kind only where the client has the record it needs); a fifth of
    the sample's size more, among the clients a partner knows, get a partner refusal. Returns
    the rows written per file and the letters' CRM records.
    """
    (clients,) = conn.execute("select count(*) from consent.golden_client").fetchone()
    sample = max(5, round(clients * share))
    conn.execute(
        "create temp table daily_sample as select client_id, row_number() over (order by "
        "md5(client_id)) %% 4 as kind from (select client_id from consent.golden_client "
        "order by md5(client_id) limit %s) s",
        (sample,),
    )
    stamp = f"{day.isoformat()}T10:00:00"
    batch = day.isoformat()
    written: dict[str, int] = {}

    letters = conn.execute(
        """
        select distinct on (s.client_id) c.crm_client_id, c.last_name, c.first_name,
               c.middle_name, c.birth_date, c.phone, k.contract_number
        from daily_sample s
        join consent.client_xref x on x.client_id = s.client_id and x.source = 'crm'
        join raw.crm_clients c on c.crm_client_id = x.source_record_id
        join raw.crm_contracts k on k.crm_client_id = c.crm_client_id
        where s.kind = 0
        order by s.client_id, c._batch_id desc, k._batch_id desc, k.contract_number
        """
    ).fetchall()
    written["helpdesk/tickets.csv"] = _write_csv(
        landing / "helpdesk" / batch / "tickets.csv",
        ["ticket_id", "received_at", "request_type", "fio", "birth_date", "phone", "email",
         "passport", "contract_number", "scope_purposes", "scope_channels", "letter_scan_url",
         "closed_at"],
        [
            (f"HD-D-{i}", stamp, "revoke_consent", " ".join(p for p in (ln, fn, mn) if p),
             bd, phone, "", "", contract, "marketing", "all",
             f"https://scans.example.ru/letters/HD-D-{i}.pdf", "")
            for i, (_, ln, fn, mn, bd, phone, contract) in enumerate(letters)
        ],
    )  # fmt: skip

    cards = conn.execute(
        """
        select distinct on (s.client_id) c.crm_client_id, c.last_name, c.first_name,
               c.middle_name, c.birth_date, c.phone, c.email, c.passport, c.address,
               f.contract_id, f.flag_code
        from daily_sample s
        join consent.client_xref x on x.client_id = s.client_id and x.source = 'crm'
        join raw.crm_clients c on c.crm_client_id = x.source_record_id
        join raw.crm_consent_flags f on f.crm_client_id = c.crm_client_id
        where s.kind = 1
        order by s.client_id, c._batch_id desc, f._batch_id desc, f.contract_id, f.flag_code
        """
    ).fetchall()
    crm = landing / "crm" / batch
    written["crm/clients.csv"] = _write_csv(
        crm / "clients.csv",
        ["crm_client_id", "last_name", "first_name", "middle_name", "birth_date", "phone",
         "email", "passport", "address", "updated_at"],
        [(*row[:9], stamp) for row in cards],
    )  # fmt: skip
    written["crm/consent_flags.csv"] = _write_csv(
        crm / "consent_flags.csv",
        ["crm_client_id", "contract_id", "flag_code", "value", "set_at", "set_by", "scan_url"],
        [(row[0], row[9], row[10], "false", stamp, "daily-bench", "") for row in cards],
    )
    written["crm/contracts.csv"] = _write_csv(
        crm / "contracts.csv",
        ["contract_id", "crm_client_id", "contract_number", "system_code", "product_type",
         "product_name", "signed_at", "closed_at", "branch_code", "scan_url"],
        [],
    )  # fmt: skip

    accounts = conn.execute(
        """
        select distinct on (s.client_id) s.kind, w.account_id, w.last_name, w.first_name,
               w.middle_name, w.birth_date, w.phone, w.email
        from daily_sample s
        join consent.client_xref x on x.client_id = s.client_id and x.source = 'web'
        join raw.web_events w on w.account_id = x.source_record_id
        where s.kind = 2
        order by s.client_id, w._batch_id desc, w.occurred_at desc
        """
    ).fetchall()
    newcomers = conn.execute(
        """
        select distinct on (s.client_id) c.crm_client_id, c.last_name, c.first_name,
               c.middle_name, c.birth_date, c.phone, c.email
        from daily_sample s
        join consent.client_xref x on x.client_id = s.client_id and x.source = 'crm'
        join raw.crm_clients c on c.crm_client_id = x.source_record_id
        where s.kind = 3
        order by s.client_id, c._batch_id desc
        """
    ).fetchall()
    wording = conn.execute(
        "select wording_version, text_sha256 from raw.catalog_wordings "
        "where consent_code = 'ads_email' order by _batch_id desc, effective_from desc limit 1"
    ).fetchone()
    events = []
    for i, (_, account, ln, fn, mn, bd, phone, email) in enumerate(accounts):
        events.append({
            "event_id": f"EV-D-W{i}", "occurred_at": stamp, "event_type": "consent_withdrawn",
            "account_id": account,
            "person": {"last_name": ln, "first_name": fn, "middle_name": mn or None,
                       "birth_date": bd or None, "phone": phone, "email": email},
            "consents": [{"consent_code": "ads_email", "granted": False,
                          "wording_version": None, "wording_sha256": None}],
            "form_id": "profile-consents", "confirmation": "sms_code", "ip": "192.0.2.1",
            "evidence_url": f"https://logs.example.ru/EV-D-W{i}",
        })  # fmt: skip
    for i, (_, ln, fn, mn, bd, phone, email) in enumerate(newcomers):
        events.append({
            "event_id": f"EV-D-R{i}", "occurred_at": stamp, "event_type": "registration",
            "account_id": f"ACC-D-{i}",
            "person": {"last_name": ln, "first_name": fn, "middle_name": mn or None,
                       "birth_date": bd or None, "phone": phone, "email": email},
            "consents": [{"consent_code": "ads_email", "granted": True,
                          "wording_version": wording[0] if wording else None,
                          "wording_sha256": wording[1] if wording else None}],
            "form_id": "signup-v3", "confirmation": "email_link", "ip": "192.0.2.2",
            "evidence_url": f"https://logs.example.ru/EV-D-R{i}",
        })  # fmt: skip
    web = landing / "web" / batch
    web.mkdir(parents=True, exist_ok=True)
    with open(web / "events.jsonl", "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")
    written["web/events.jsonl"] = len(events)

    partners = conn.execute(
        """
        select distinct on (s.client_id) p.partner_code, p.partner_client_id, p.last_name,
               p.first_name, p.middle_name, p.birth_date, p.phone, p.email, p.consent_code,
               p.agreement_id
        from (
            -- a fifth of the sample, among the clients a partner knows
            select client_id from consent.client_xref where source = 'partner'
            group by client_id order by md5(client_id) limit %s
        ) s
        join consent.client_xref x on x.client_id = s.client_id and x.source = 'partner'
        join raw.partner_clients p
          on p.partner_code || ':' || p.partner_client_id = x.source_record_id
        where p.consent_code <> ''
        order by s.client_id, p._batch_id desc, p.consent_code
        """,
        (max(1, sample // 5),),
    ).fetchall()
    written["partner/partner_clients.csv"] = _write_csv(
        landing / "partner" / batch / "partner_clients.csv",
        ["partner_code", "partner_client_id", "last_name", "first_name", "middle_name",
         "birth_date", "phone", "email", "consent_code", "granted", "obtained_at",
         "valid_until", "restricted_channels", "agreement_id", "evidence_url"],
        [(*row[:9], "false", stamp, "", "", row[9], "") for row in partners],
    )  # fmt: skip
    for source in ("helpdesk", "crm", "web", "partner"):
        _seal(landing / source / batch)
    conn.execute("drop table daily_sample")
    return {"rows": written, "sample_clients": sample, "letters": [r[0] for r in letters]}


def generated_installation(root: Path, url: str, args) -> tuple[dict, Path, date, dict]:
    """Feeds generated for --clients and --seed into `root/landing`, and the environment of an
    installation over them and `url` (CONSENT_HOME under `root`, the real clock): the
    generation's figures, the landing zone, the day after its last batch plus a week (when
    the benchmarks' daily batch lands) and the environment."""
    generated = root / "generated"
    generation = generate_feeds(generated, clients=args.clients, seed=args.seed)
    landing = root / "landing"
    landing.mkdir()
    for source in ("catalog", "crm", "web", "helpdesk", "partner"):
        os.rename(generated / source, landing / source)
    last = max(p.name for p in landing.glob("*/*") if p.is_dir())
    day = date.fromisoformat(last[:10]) + timedelta(days=7)
    env = {
        **{k: v for k, v in os.environ.items() if k != "CONSENT_NOW"},
        "CONSENT_HOME": str(root / "home"),
        "CONSENT_LANDING_DIR": str(landing),
        "CONSENT_DATABASE_URL": url,
        "COLUMNS": "200",
    }
    return generation, landing, day, env


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], feeds=False)
    parser.add_argument("--share", type=float, default=0.01, help="share of clients touched")
    args = parser.parse_args()
    args.feeds = None
    started_at = datetime.now(UTC)
    check = Verification()
    with tempfile.TemporaryDirectory(prefix="consent-daily-") as scratch, scratch_database() as url:
        generation, landing, day, env = generated_installation(Path(scratch), url, args)
        full_at = f"{day.isoformat()}T00:00:00+03:00"
        daily_at = f"{(day + timedelta(days=1)).isoformat()}T00:00:00+03:00"
        full, full_s, full_mem = run_measured(cli_run, {**env, "CONSENT_NOW": full_at}, pg_url=url)
        check.equal("full run succeeds", full["returncode"], 0)
        with psycopg.connect(url, autocommit=True) as conn:
            batch = write_daily_batch(conn, landing, args.share, day)
            (last_change,) = conn.execute(
                "select coalesce(max(change_id), 0) from consent.consent_change"
            ).fetchone()
        daily, daily_s, daily_mem = run_measured(
            cli_run, {**env, "CONSENT_NOW": daily_at}, pg_url=url
        )
        check.equal("daily run succeeds", daily["returncode"], 0)
        with psycopg.connect(url, autocommit=True) as conn:
            loaded = dict(
                conn.execute(
                    "select source, rows_loaded from consent.ingest_batches "
                    "where batch_id = %s and status = 'loaded'",
                    (day.isoformat(),),
                ).fetchall()
            )
            expected = {
                source: sum(n for f, n in batch["rows"].items() if f.startswith(source + "/"))
                for source in ("helpdesk", "crm", "web", "partner")
            }
            check.equal("every row of the daily batch loaded", loaded, expected)
            (still_allowed,) = conn.execute(
                "select count(*) from consent.client_xref x join consent.golden_consent g "
                "using (client_id) where x.source = 'crm' and x.source_record_id = any(%s) "
                "and g.purpose = 'marketing' and g.channel = 'call' and g.partner_code = '' "
                "and g.status = 'granted'",
                (batch["letters"],),
            ).fetchone()
            check.check("every letter's client revoked for marketing calls", still_allowed == 0,
                        still_allowed)  # fmt: skip
            changes, keys = conn.execute(
                "select count(*), count(distinct (client_id, purpose, channel, partner_code)) "
                "from consent.consent_change where change_id > %s",
                (last_change,),
            ).fetchone()
            check.check("the daily change feed has changes", changes > 0, changes)
            check.equal("each key changes once in the daily feed", changes, keys)
            counts = snapshot(conn, "bench_daily")
            (derivation, affected) = conn.execute(
                "select derivation, affected_clients from consent.publication "
                "order by published_at desc limit 1"
            ).fetchone()
            check.equal("the daily run derives incrementally", derivation, "incremental")
        rederive, rederive_s, rederive_mem = run_measured(
            cli_run, {**env, "CONSENT_NOW": daily_at}, "--rederive", pg_url=url
        )
        check.equal("rederive succeeds", rederive["returncode"], 0)
        with psycopg.connect(url, autocommit=True) as conn:
            snapshot(conn, "bench_rederive")
            check.equal(
                "every client derived again publishes the daily state",
                differences(conn, "bench_daily", "bench_rederive"),
                {},
            )
        refresh, refresh_s, refresh_mem = run_measured(
            cli_run, {**env, "CONSENT_NOW": daily_at}, "--full-refresh", pg_url=url
        )
        check.equal("full refresh succeeds", refresh["returncode"], 0)
        with psycopg.connect(url, autocommit=True) as conn:
            snapshot(conn, "bench_refresh")
            check.equal(
                "the full refresh publishes the daily state",
                differences(conn, "bench_daily", "bench_refresh"),
                {},
            )
        pg_version = server_version(url)
    figures = {
        "full_run_s": round(full_s, 1),
        "daily_run_s": round(daily_s, 1),
        "rederive_s": round(rederive_s, 1),
        "full_refresh_s": round(refresh_s, 1),
        "affected_clients": affected,
        "daily_over_full": round(daily_s / full_s, 3),
        "peak_memory_mib": {
            "full_run": full_mem.tree_peak_mib,
            "daily_run": daily_mem.tree_peak_mib,
            "rederive": rederive_mem.tree_peak_mib,
            "full_refresh": refresh_mem.tree_peak_mib,
        },
        "step_seconds": {
            "full_run": full["steps"],
            "daily_run": daily["steps"],
            "rederive": rederive["steps"],
            "full_refresh": refresh["steps"],
        },
        "identity": {
            "full_run": full["identity"],
            "daily_run": daily["identity"],
            "rederive": rederive["identity"],
            "full_refresh": refresh["identity"],
        },
        "daily_batch": {"clients": batch["sample_clients"], "rows": batch["rows"]},
        "published_rows": counts,
        "generation": generation_figures(generation),
    }
    record_and_finish(
        "daily",
        args,
        feed_parameters(args, share=args.share, full_run_at=full_at, daily_run_at=daily_at),
        figures,
        check,
        pg_version=pg_version,
        started_at=started_at,
    )


if __name__ == "__main__":
    main()
