"""Stop means stop at the door: no revocation is dropped for a defect in a field it does not need.

Hostile batches as they arrive in real life (dates in local formats, a typo'd year, codes in
another case, a stray quote, a Windows-1251 export, NUL bytes, JSON nested beyond reason) load
their good lines, keep every revocation, and reject exactly the bad lines with file, line and
reason. Every physical line reconciles: loaded + rejected = lines read.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sources import crm, helpdesk, partner
from sources.loader import load_batch
from sources.readers import BatchFileError
from tests.landing_batches import write_batch

TICKETS = ",".join(helpdesk.TICKETS.column_names)
CLIENTS = ",".join(crm.CLIENTS.column_names)
FLAGS = ",".join(crm.CONSENT_FLAGS.column_names)
PARTNERS = ",".join(partner.PARTNER_CLIENTS.column_names)
# the batches below arrive at this instant (their _SUCCESS file's time)
ARRIVAL = datetime(2024, 6, 11, 9, 0, tzinfo=UTC)


def _batch(root: Path, source: str, batch_id: str, files: dict[str, bytes]) -> Path:
    """A complete batch that arrived at ARRIVAL (its _SUCCESS marker's time)."""
    folder = write_batch(root, source, batch_id, files)
    os.utime(folder / "_SUCCESS", (ARRIVAL.timestamp(), ARRIVAL.timestamp()))
    return folder


def _crm(root: Path, clients: bytes = b"", flags: bytes = b"", batch_id="2024-06-10") -> Path:
    return _batch(
        root,
        "crm",
        batch_id,
        {
            "clients.csv": CLIENTS.encode() + b"\n" + clients,
            "contracts.csv": (",".join(crm.CONTRACTS.column_names) + "\n").encode(),
            "consent_flags.csv": FLAGS.encode() + b"\n" + flags,
        },
    )


def _tickets(root: Path, body: bytes, batch_id: str = "2024-06-10") -> Path:
    return _batch(root, "helpdesk", batch_id, {"tickets.csv": TICKETS.encode() + b"\n" + body})


def _issues(conn, source: str):
    return conn.execute(
        "select line_number, record_id, field, rule, severity, reason from consent.dq_rejections "
        "where source = %s order by line_number nulls first, severity, field",
        (source,),
    ).fetchall()


def _reconciles(conn, result, path: Path) -> None:
    """Physical data lines = loaded rows + rejected lines, and each rejected line has a reason."""
    lines = path.read_bytes().count(b"\n") - 1
    file = next(f for f in result.files if f.file_name == path.name)
    assert file.rows_read == lines
    assert file.rows_loaded + file.rows_rejected == lines
    rejected_lines = conn.execute(
        "select count(distinct line_number) from consent.dq_rejections "
        "where file_name = %s and severity = 'reject' and batch_id = %s",
        (path.name, result.batch_id),
    ).fetchone()[0]
    assert rejected_lines == file.rows_rejected


def test_letters_with_defects_in_fields_they_do_not_need_still_revoke(conn, tmp_path):
    folder = _tickets(
        tmp_path,
        # a local date format in birth_date, an unreadable receipt time, a code in another case,
        # a receipt in 2052 (typo), and a complaint with a bad date (not a stop: rejected)
        "HD-1,2024-06-10T10:00:00,revoke_consent,Иванов И.П.,31.12.1980,,,,,marketing,all,,\n"
        "HD-2,10.06.2024 10:00,revoke_consent,Петров П.,1980-01-01,,,,,marketing,sms,,\n"
        "HD-3,2024-06-10T11:00:00, Revoke_consent ,Сидоров С.,,,,,,all,all,,\n"
        "HD-4,2052-06-10T11:00:00,erase_data,Кузнецов К.,,,,,,all,all,,\n"
        "HD-5,2024-06-10T11:00:00,complaint,Смирнов С.,31.12.1980,,,,,,,,\n"
        "HD-6,,restrict_processing,Попов П.,,,,,,marketing,call,,2024-13-01\n".encode(),
    )
    result = load_batch(conn, "helpdesk", folder)
    _reconciles(conn, result, folder / "tickets.csv")
    rows = conn.execute(
        "select ticket_id, received_at, request_type, coalesce(birth_date, ''), "
        "coalesce(closed_at, '') from raw.helpdesk_tickets order by 1"
    ).fetchall()
    arrival = ARRIVAL.isoformat(timespec="seconds")
    assert rows == [
        ("HD-1", "2024-06-10T10:00:00", "revoke_consent", "", ""),
        ("HD-2", arrival, "revoke_consent", "1980-01-01", ""),
        ("HD-3", "2024-06-10T11:00:00", "revoke_consent", "", ""),
        ("HD-4", arrival, "erase_data", "", ""),
        ("HD-6", arrival, "restrict_processing", "", ""),
    ]
    issues = _issues(conn, "helpdesk")
    assert [
        (line, rid, field, rule, severity) for line, rid, field, rule, severity, _ in issues
    ] == [
        (2, "HD-1", "birth_date", "invalid_date", "warn"),
        (3, "HD-2", "received_at", "invalid_date", "warn"),
        (4, "HD-3", "request_type", "unknown_value", "warn"),
        (5, "HD-4", "received_at", "invalid_date", "warn"),
        (6, "HD-5", "birth_date", "invalid_date", "reject"),
        (7, "HD-6", "closed_at", "invalid_date", "warn"),
        (7, "HD-6", "received_at", "invalid_date", "warn"),
    ]
    reasons = {(line, field): reason for line, _, field, _, _, reason in issues}
    assert (
        reasons[(3, "received_at")]
        == "received_at cannot be read; the batch's arrival time is used"
    )
    assert reasons[(5, "received_at")] == (
        "received_at lies after the batch arrived; the arrival time is used"
    )
    assert conn.execute("select arrived_at from consent.ingest_batches").fetchone()[0] == ARRIVAL


def test_refusing_ticks_and_partner_refusals_survive_bad_dates(conn, tmp_path):
    folder = _crm(
        tmp_path,
        flags=b"K-1,,SMS_OK,FALSE,2024-06-31T12:00:00,op,\n"  # June 31: arrival time
        b"K-2,,SMS_OK,true,2024-06-31T12:00:00,op,\n",  # a grant with a bad date: rejected
    )
    result = load_batch(conn, "crm", folder)
    _reconciles(conn, result, folder / "consent_flags.csv")
    assert conn.execute(
        "select crm_client_id, value, set_at from raw.crm_consent_flags"
    ).fetchall() == [("K-1", "FALSE", ARRIVAL.isoformat(timespec="seconds"))]
    body = (
        "BETA,B-1,Ким,Виктор,,19.04.1975,,,ads_sms,false,2024-06-01T10:00:00,,,AG-1,\n"
        "BETA,B-2,Ли,Анна,,19.04.1975,,,ads_sms,true,2024-06-01T10:00:00,,,AG-1,\n"
        "BETA,B-3,Пак,Ольга,,1980-01-01,,,ads_sms,true,2024-06-01T10:00:00,2025-99-01,call,AG-1,\n"
    )
    folder = _batch(
        tmp_path,
        "partner",
        "2024-06-10",
        {"partner_clients.csv": (PARTNERS + "\n" + body).encode()},
    )
    result = load_batch(conn, "partner", folder)
    _reconciles(conn, result, folder / "partner_clients.csv")
    kept = conn.execute(
        "select partner_client_id, birth_date, coalesce(valid_until, ''), "
        "coalesce(restricted_channels, '') from raw.partner_clients order by 1"
    ).fetchall()
    # the refusal and the restriction stay (bad fields emptied); the plain grant is rejected
    assert kept == [("B-1", "", "", ""), ("B-3", "1980-01-01", "", "call")]


def test_a_stray_quote_in_the_first_letter_does_not_swallow_the_other_39(conn, tmp_path):
    quote = '"'
    lines = [
        f"HD-{n},2024-06-10T10:00:00,revoke_consent,{quote if n == 1 else ''}Иванов {n},,,,,,"
        "marketing,all,,"
        for n in range(1, 41)
    ]
    folder = _tickets(tmp_path, ("\n".join(lines) + "\n").encode())
    result = load_batch(conn, "helpdesk", folder)
    _reconciles(conn, result, folder / "tickets.csv")
    assert result.rows_loaded == 40
    assert conn.execute("select max(length(fio)) from raw.helpdesk_tickets").fetchone()[0] < 20
    assert [
        (line, rule, severity) for line, _, _, rule, severity, _ in _issues(conn, "helpdesk")
    ] == [(2, "column_count", "warn")]


def test_a_windows_1251_export_is_read_as_such_not_lost(conn, tmp_path):
    body = (
        "HD-1,2024-06-10T10:00:00,revoke_consent,Соколова Мария Андреевна,1988-11-02,,,,,"
        "marketing,all,,\n"
        "HD-2,2024-06-10T10:00:00,complaint,Ким Виктор,1975-04-19,,,,,,,,\n"
    )
    folder = _tickets(tmp_path, body.encode("cp1251"))
    result = load_batch(conn, "helpdesk", folder)
    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", 2, 0)
    assert conn.execute("select fio from raw.helpdesk_tickets order by 1").fetchall() == [
        ("Ким Виктор",),
        ("Соколова Мария Андреевна",),
    ]
    assert [
        (line, rule, severity) for line, _, _, rule, severity, _ in _issues(conn, "helpdesk")
    ] == [(None, "invalid_encoding", "warn")]


def test_a_hostile_crm_batch_loads_its_good_clients_and_rejects_exactly_the_bad_lines(
    conn, tmp_path
):
    clients = (
        b"K-1,\xd0\x9f\xd0\xb5\xd1\x82\xd1\x80\xd0\xbe\xd0\xb2,Petr,,1980-01-01,,,,,\n"  # 2 good
        b"K-2,Short,Row\n"  # 3: too few fields
        b"K-3,Ivanov,Ivan,,1980-02-30,,,,,\n"  # 4: impossible date
        b",Noid,Anna,,1980-01-01,,,,,\n"  # 5: missing id
        b"K-5,\xff\xfeBad,Olga,,1980-01-01,,,,,\n"  # 6: invalid UTF-8
        b"K-6,Nul\x00Byte,Oleg,,1980-01-01,,,,,\n"  # 7: NUL byte
        b"K-7,Sidorov,Sidor,,1980-01-01,,,,,\n"  # 8 good
    )
    flags = (
        b"K-5,,SMS_OK,false,2024-06-01T10:00:00,op\xff,\n"  # damaged bytes, but a refusal: kept
        b"K-6,,SMS_OK,true,2024-06-01T10:00:00,op\x00,\n"  # damaged grant: rejected
    )
    folder = _crm(tmp_path, clients=clients, flags=flags)
    result = load_batch(conn, "crm", folder)
    assert result.status == "loaded"
    _reconciles(conn, result, folder / "clients.csv")
    _reconciles(conn, result, folder / "consent_flags.csv")
    assert conn.execute("select crm_client_id from raw.crm_clients order by 1").fetchall() == [
        ("K-1",),
        ("K-7",),
    ]
    assert conn.execute("select crm_client_id, value from raw.crm_consent_flags").fetchall() == [
        ("K-5", "false")
    ]
    rejected = conn.execute(
        "select file_name, line_number, record_id, rule, severity from consent.dq_rejections "
        "order by file_name, line_number"
    ).fetchall()
    assert rejected == [
        ("clients.csv", 3, "K-2", "column_count", "reject"),
        ("clients.csv", 4, "K-3", "invalid_date", "reject"),
        ("clients.csv", 5, None, "missing_required", "reject"),
        ("clients.csv", 6, "K-5", "invalid_encoding", "reject"),
        ("clients.csv", 7, "K-6", "invalid_encoding", "reject"),
        ("consent_flags.csv", 2, "K-5:SMS_OK", "invalid_encoding", "warn"),
        ("consent_flags.csv", 3, "K-6:SMS_OK", "invalid_encoding", "reject"),
    ]


def test_poison_json_lines_are_rejected_alone_and_the_withdrawals_kept(conn, tmp_path):
    def event(n: int, event_type: str, granted: bool, **person) -> dict:
        return {
            "event_id": f"EV-{n}",
            "occurred_at": "2024-06-10T10:00:00",
            "event_type": event_type,
            "account_id": f"ACC-{n}",
            "person": {"last_name": "Ivanova", "first_name": "Anna", **person},
            "consents": [{"consent_code": "ads_sms", "granted": granted}],
            "confirmation": "none",
        }

    lines = [
        json.dumps(event(1, "consent_given", True)).encode(),  # 1 good
        json.dumps(event(2, "consent_withdrawn", False)).encode().replace(b"Anna", b"An\x00na"),
        b"[" * 100_000 + b"]" * 100_000,  # 3: nested beyond any parser's stack
        json.dumps(event(4, "Consent_Withdrawn", False, birth_date="31.12.1980")).encode(),
        json.dumps(event(5, "consent_given", True)).encode().replace(b"Anna", b"An\xffna"),
        json.dumps(event(6, "consent_given", False)).encode(),  # 6: a refusal in a given event
    ]
    folder = _batch(tmp_path, "web", "2024-06-10", {"events.jsonl": b"\n".join(lines) + b"\n"})
    result = load_batch(conn, "web", folder)
    assert (result.status, result.rows_read, result.rows_loaded) == ("loaded", 6, 4)
    assert conn.execute(
        "select event_id, event_type, birth_date from raw.web_events order by 1"
    ).fetchall() == [
        ("EV-1", "consent_given", None),
        ("EV-2", "consent_withdrawn", None),
        ("EV-4", "consent_withdrawn", ""),
        ("EV-6", "consent_given", None),
    ]
    assert conn.execute(
        "select event_id, granted from raw.web_event_consents order by 1"
    ).fetchall() == [("EV-1", "true"), ("EV-2", "false"), ("EV-4", "false"), ("EV-6", "false")]
    assert [
        (line, field, rule, severity) for line, _, field, rule, severity, _ in _issues(conn, "web")
    ] == [
        (2, None, "invalid_encoding", "warn"),
        (3, None, "invalid_json", "reject"),
        (4, "birth_date", "invalid_date", "warn"),
        (4, "event_type", "unknown_value", "warn"),
        (5, None, "invalid_encoding", "reject"),
    ]


def test_a_header_error_names_columns_never_the_data_in_their_place(conn, tmp_path):
    # an export without its header: the first line is a client's record
    folder = _crm(tmp_path)
    (folder / "clients.csv").write_text(
        "K-1,Соколова,Мария,Андреевна,1988-11-02,+79035551234,m@example.ru,4612 345678,Казань,\n",
        encoding="utf-8",
    )
    with pytest.raises(BatchFileError) as raised:
        load_batch(conn, "crm", folder)
    message = str(raised.value)
    for personal in ("Соколова", "Мария", "1988-11-02", "79035551234", "4612", "Казань"):
        assert personal not in message
    assert "line 1: header does not match the contract" in message
    assert "missing: crm_client_id, last_name" in message
    assert "not shown: they may hold personal data" in message
    stored = conn.execute("select status, error from consent.ingest_batches").fetchone()
    assert stored == ("failed", message)


def test_rejections_name_the_record_by_its_id_column_whatever_the_column_order(conn, tmp_path):
    columns = crm.CLIENTS.column_names
    reordered = [
        "last_name",
        "first_name",
        *[c for c in columns if c not in ("last_name", "first_name")],
    ]
    folder = _crm(tmp_path)
    (folder / "clients.csv").write_text(
        ",".join(reordered) + "\n"
        "Соколова,Мария,K-1,Андреевна,1988-11-02,,,,\n"  # one field short
        "Ким,Виктор,K-2,,1975-04-19,,,,,\n",
        encoding="utf-8",
    )
    result = load_batch(conn, "crm", folder)
    assert result.rows_loaded == 1
    assert conn.execute("select record_id, rule from consent.dq_rejections").fetchall() == [
        ("K-1", "column_count")
    ]
