"""Ingestion stories: every line lands in a raw table or in dq_rejections, and re-loads are safe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sources import SOURCES
from sources.landing import all_complete_batches, complete_batches
from sources.loader import load_batch
from sources.readers import BatchFileError
from tests.landing_batches import write_batch

HEADERS = {
    spec.file_name: ",".join(spec.column_names)
    for source in SOURCES.values()
    for spec in source.files
    if spec.file_format == "csv"
}


def _count(conn, table: str, batch_id: str | None = None) -> int:
    query = f"select count(*) from raw.{table}"
    if batch_id:
        return conn.execute(query + " where _batch_id = %s", (batch_id,)).fetchone()[0]
    return conn.execute(query).fetchone()[0]


def _rejections(conn, source: str):
    return conn.execute(
        "select file_name, line_number, record_id, field, rule, reason from consent.dq_rejections "
        "where source = %s order by file_name, line_number",
        (source,),
    ).fetchall()


def _crm_batch(root: Path, clients: str, batch_id: str = "2024-07-01") -> Path:
    return write_batch(
        root,
        "crm",
        batch_id,
        {
            "clients.csv": HEADERS["clients.csv"] + "\n" + clients,
            "contracts.csv": HEADERS["contracts.csv"] + "\n",
            "consent_flags.csv": HEADERS["consent_flags.csv"] + "\n",
        },
    )


def test_every_source_of_the_worked_example_loads_completely(conn, examples):
    for batch in all_complete_batches(examples):
        result = load_batch(conn, batch.source, batch.path)
        assert result.rows_rejected == 0, (batch, result)
    assert _count(conn, "crm_clients") == 3
    assert _count(conn, "crm_contracts") == 3
    assert _count(conn, "crm_consent_flags") == 2
    assert _count(conn, "web_events") == 2
    assert _count(conn, "web_event_consents") == 2
    assert _count(conn, "helpdesk_tickets") == 1
    assert _count(conn, "partner_clients") == 1
    assert _count(conn, "catalog_wordings") == 6
    assert _count(conn, "catalog_product_matrix") == 4
    # values are kept exactly as in the file, with their lineage
    row = conn.execute(
        "select address, phone, _file_name, _line_number from raw.crm_clients "
        "where crm_client_id = 'K-1'"
    ).fetchone()
    assert row == ("г. Казань, ул. Баумана, д. 5", "+7 (903) 555-12-34", "clients.csv", 2)
    web = conn.execute(
        "select last_name, confirmation, _payload->>'form_id' from raw.web_events "
        "where event_id = 'EV-1'"
    ).fetchone()
    assert web == ("Sokolova", "email_link", "signup-v3")
    consent = conn.execute(
        "select consent_code, granted, wording_version from raw.web_event_consents "
        "where event_id = 'EV-2'"
    ).fetchone()
    assert consent == ("ads_sms", "false", None)
    ticket = conn.execute("select fio, scope_channels from raw.helpdesk_tickets").fetchone()
    assert ticket == ("Ким В.", "all")


def test_loading_a_batch_twice_changes_nothing(conn, examples):
    batch = complete_batches(examples, "crm")[0]
    first = load_batch(conn, "crm", batch.path)
    snapshot = conn.execute("select * from raw.crm_clients order by _line_number").fetchall()
    second = load_batch(conn, "crm", batch.path)
    assert first.rows_loaded == second.rows_loaded == 8
    assert (
        conn.execute("select * from raw.crm_clients order by _line_number").fetchall() == snapshot
    )
    registry = conn.execute("select status, rows_loaded from consent.ingest_batches").fetchall()
    assert registry == [("loaded", 8)]


@pytest.mark.parametrize(
    ("line", "field", "rule"),
    [
        ("K-9,Ivanov,Ivan,,1990-13-01,,,,,2024-01-01T10:00:00", "birth_date", "invalid_date"),
        ("K-9,Ivanov,Ivan,,1990-01-01,,,,,yesterday", "updated_at", "invalid_date"),
        (",Ivanov,Ivan,,1990-01-01,,,,,2024-01-01T10:00:00", "crm_client_id", "missing_required"),
        ("K-9,Ivanov,Ivan", None, "column_count"),
        ("K-9,Ivanov,Ivan,,1990-01-01,,,,,2024-01-01T10:00:00,extra", None, "column_count"),
    ],
)
def test_a_malformed_crm_row_is_rejected_with_its_reason_and_the_rest_loads(
    conn, tmp_path, line, field, rule
):
    good = "K-1,Petrov,Petr,,1980-01-01,,,,,2024-01-01T10:00:00"
    folder = _crm_batch(tmp_path, f"{good}\n{line}\n{good.replace('K-1', 'K-2')}\n")
    result = load_batch(conn, "crm", folder)
    assert result.rows_loaded == 2 and result.rows_rejected == 1
    rejections = _rejections(conn, "crm")
    assert len(rejections) == 1
    file_name, line_number, _, got_field, got_rule, reason = rejections[0]
    assert (file_name, line_number, got_field, got_rule) == ("clients.csv", 3, field, rule)
    assert "Ivanov" not in reason and "1990" not in reason  # never the personal data


def test_broken_encoding_is_rejected_by_line(conn, tmp_path):
    folder = _crm_batch(
        tmp_path,
        b"K-1,Petrov,Petr,,,,,,,\nK-2,\xd0\xff\xfe,Petr,,,,,,,\nK-3,Sidorov,Ivan,,,,,,,\n".decode(
            "latin-1"
        ),
    )
    # write the raw bytes (the helper above encoded text as UTF-8)
    (folder / "clients.csv").write_bytes(
        HEADERS["clients.csv"].encode()
        + b"\nK-1,Petrov,Petr,,,,,,,\nK-2,\xd0\xff\xfe,Petr,,,,,,,\nK-3,Sidorov,Ivan,,,,,,,\n"
    )
    result = load_batch(conn, "crm", folder)
    assert result.rows_loaded == 2
    assert _rejections(conn, "crm") == [
        (
            "clients.csv",
            3,
            "K-2",
            None,
            "invalid_encoding",
            "bytes at position 4 are not valid UTF-8",
        )
    ]


def test_unknown_enum_values_and_booleans_are_rejected(conn, tmp_path):
    header = HEADERS["tickets.csv"]
    folder = write_batch(
        tmp_path,
        "helpdesk",
        "2024-07-01",
        {
            "tickets.csv": f"{header}\n"
            "HD-1,2024-06-03T10:42:00,revoke_consent,Ким В.,,,,,,marketing,all,,\n"
            "HD-2,2024-06-03T10:42:00,please_stop,Ким В.,,,,,,marketing,all,,\n"
        },
    )
    load_batch(conn, "helpdesk", folder)
    assert [r[1:] for r in _rejections(conn, "helpdesk")] == [
        (
            3,
            "HD-2",
            "request_type",
            "unknown_value",
            "request_type is not one of: revoke_consent, erase_data, restrict_processing, "
            "access_request, complaint",
        )
    ]
    flags = write_batch(
        tmp_path,
        "crm",
        "2024-07-02",
        {
            "clients.csv": HEADERS["clients.csv"] + "\n",
            "contracts.csv": HEADERS["contracts.csv"] + "\n",
            "consent_flags.csv": HEADERS["consent_flags.csv"]
            + "\nK-1,,SMS_OK,yes,2024-01-01T10:00:00,,\nK-1,,SMS_OK,TRUE,2024-01-01T10:00:00,,\n",
        },
    )
    result = load_batch(conn, "crm", flags)
    assert result.rows_loaded == 1
    assert [r[3:5] for r in _rejections(conn, "crm")] == [("value", "unknown_value")]


def test_web_lines_that_are_not_json_objects_are_rejected_by_line(conn, tmp_path):
    event = (
        '{"event_id": "E%d", "occurred_at": "2024-06-01T20:11:05", "event_type": "%s", '
        '"account_id": "A1", "person": {"last_name": "Ivanova"}, "consents": %s, '
        '"confirmation": "none"}'
    )
    lines = [
        event % (1, "registration", '[{"consent_code": "ads_sms", "granted": true}]'),
        '{"event_id": "E2", "occurred_at": ',  # truncated JSON
        "[1, 2, 3]",  # JSON, but not an object
        event % (4, "hacked", "[]"),  # unknown event type
        event % (5, "consent_given", '[{"consent_code": "ads_sms", "granted": "yes"}]'),
        event % (6, "consent_given", '"ads_sms"'),  # consents is not a list
        event % (7, "consent_withdrawn", '[{"consent_code": "ads_sms", "granted": false}]'),
    ]
    folder = write_batch(tmp_path, "web", "2024-07-01", {"events.jsonl": "\n".join(lines) + "\n"})
    result = load_batch(conn, "web", folder)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (7, 2, 5)
    assert [(r[1], r[4]) for r in _rejections(conn, "web")] == [
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "unknown_value"),
        (5, "unknown_value"),
        (6, "unknown_value"),
    ]
    consents = conn.execute(
        "select event_id, granted from raw.web_event_consents order by _line_number"
    ).fetchall()
    assert consents == [("E1", "true"), ("E7", "false")]


def test_a_batch_with_a_missing_file_fails_alone_naming_the_file(conn, tmp_path, examples):
    shutil.copytree(examples / "crm" / "2024-06-01", tmp_path / "crm" / "2024-06-01")
    (tmp_path / "crm" / "2024-06-01" / "contracts.csv").unlink()
    with pytest.raises(BatchFileError, match=r"missing file .*contracts\.csv"):
        load_batch(conn, "crm", tmp_path / "crm" / "2024-06-01")
    assert _count(conn, "crm_clients") == 0  # nothing half-loaded
    assert conn.execute("select status from consent.ingest_batches").fetchall() == [("failed",)]
    # the other sources still load
    partner = complete_batches(examples, "partner")[0]
    assert load_batch(conn, "partner", partner.path).rows_loaded == 1


def test_a_header_that_breaks_the_contract_fails_the_batch_naming_file_and_line(conn, tmp_path):
    folder = _crm_batch(tmp_path, "K-1,A,B,,,,,,,\n")
    (folder / "clients.csv").write_text("crm_client_id,surname\nK-1,A\n")
    with pytest.raises(BatchFileError, match=r"clients\.csv line 1: header .*missing: last_name"):
        load_batch(conn, "crm", folder)


def test_a_crash_mid_batch_leaves_nothing_and_the_next_run_loads_it(conn, examples, monkeypatch):
    import sources.loader as loader

    batch = complete_batches(examples, "crm")[0]
    original = loader._load_csv
    calls = {"n": 0}

    def crash_on_second_file(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(loader, "_load_csv", crash_on_second_file)
    with pytest.raises(BatchFileError, match=r"could not be loaded \(RuntimeError\)$"):
        load_batch(conn, "crm", batch.path)
    assert _count(conn, "crm_clients") == 0
    status = conn.execute(
        "select status from consent.ingest_batches where source = 'crm' and batch_id = %s",
        (batch.batch_id,),
    ).fetchone()
    assert status == ("failed",)
    monkeypatch.setattr(loader, "_load_csv", original)
    assert load_batch(conn, "crm", batch.path).rows_loaded == 8
    assert _count(conn, "crm_clients") == 3


def _raw_state(url: str, source: str) -> dict[str, list[str]]:
    """Every raw row of a source's tables (JSON text, sorted), and its batch registrations."""
    import psycopg

    with psycopg.connect(url) as conn:
        state = {
            spec.table: sorted(
                row[0] for row in conn.execute(f"select to_jsonb(t)::text from raw.{spec.table} t")
            )
            for spec in SOURCES[source].tables
        }
        state["ingest_batches"] = sorted(
            f"{row}"
            for row in conn.execute(
                "select source, batch_id, status, rows_read, rows_loaded, rows_rejected, error "
                "from consent.ingest_batches where source = %s",
                (source,),
            )
        )
        state["dq_rejections"] = sorted(
            f"{row}"
            for row in conn.execute(
                "select batch_id, file_name, line_number, rule from consent.dq_rejections "
                "where source = %s",
                (source,),
            )
        )
    return state


def test_a_load_killed_with_sigkill_after_its_first_file_leaves_nothing_and_reloads_the_same(
    conn, database_url, server_url, examples, tmp_path
):
    """A real crash: the loading process is killed (SIGKILL) while the batch's transaction is
    open, after its first file was copied in (the test hook `batch_file_loaded`); nothing of the
    batch is visible, and loading it again gives exactly what one uninterrupted load gives."""
    import os
    import sys

    import psycopg

    from tests.cli_runs import KILL, kill_9, start_paused
    from tests.conftest import fresh_database

    batch = complete_batches(examples, "crm")[0]
    home = tmp_path / "home"
    child, marker = start_paused(
        [
            sys.executable,
            "-c",
            "import sys, psycopg\n"
            "from pathlib import Path\n"
            "from sources.loader import load_batch\n"
            "with psycopg.connect(sys.argv[1], autocommit=True) as conn:\n"
            "    load_batch(conn, 'crm', Path(sys.argv[2]))\n",
            database_url,
            str(batch.path),
        ],
        {**os.environ, "CONSENT_HOME": str(home)},
        home,
        "batch_file_loaded",
        timeout=120,
        what="the load never reached its first file",
        poll=0.1,
    )
    # the first file is in the child's open transaction (its partitions locked): kill it there
    kill_9(child)
    assert child.returncode == -KILL

    # nothing of the batch: no raw row, no registration (the open transaction died with it)
    assert all(_count(conn, spec.table) == 0 for spec in SOURCES["crm"].tables)
    assert conn.execute("select count(*) from consent.ingest_batches").fetchone()[0] == 0

    # the next run loads it whole, as one uninterrupted load into a database of its own does
    marker.unlink()
    assert load_batch(conn, "crm", batch.path).rows_loaded == 8
    with fresh_database(server_url) as reference_url:
        from sources.schema import ensure_schema

        with psycopg.connect(reference_url, autocommit=True) as reference:
            ensure_schema(reference)
            load_batch(reference, "crm", batch.path)
        expected = _raw_state(reference_url, "crm")
    got = _raw_state(database_url, "crm")
    assert got["crm_clients"] and got == expected


def test_generated_feeds_reconcile_and_only_the_deliberately_bad_rows_are_rejected(conn, tmp_path):
    import csv

    from sources.generator import GeneratorConfig, generate

    landing = tmp_path / "feeds"
    generate(landing, GeneratorConfig(clients=3000, seed=11, bad_row_rate=0.01))
    for batch in all_complete_batches(landing):
        load_batch(conn, batch.source, batch.path)

    # every data line of every file is either a raw row or a rejection
    for source in SOURCES.values():
        for spec in source.files:
            for path in sorted(landing.glob(f"{source.name}/*/{spec.file_name}")):
                batch_id = path.parent.name
                lines = path.read_bytes().count(b"\n") - (1 if spec.file_format == "csv" else 0)
                raw = _count(conn, spec.table, batch_id)
                rejected = conn.execute(
                    "select count(*) from consent.dq_rejections "
                    "where source = %s and batch_id = %s and file_name = %s",
                    (source.name, batch_id, spec.file_name),
                ).fetchone()[0]
                assert lines == raw + rejected, (path, lines, raw, rejected)

    with open(landing / "truth" / "bad_rows.csv", newline="", encoding="utf-8") as handle:
        expected = {
            (r["source"], r["batch_id"], r["file_name"], int(r["line_number"]), r["rule"])
            for r in csv.DictReader(handle)
            if r["stage"] == "ingest"
        }
    got = set(
        conn.execute(
            "select source, batch_id, file_name, line_number, rule from consent.dq_rejections"
        ).fetchall()
    )
    assert len(expected) >= 20  # every kind is represented at this rate
    assert got == expected
