"""Property-based tests of the readers: hostile bytes never crash a load or lose a revocation.

Valid feed files are mutated at byte and CSV level (quotes, NUL, invalid UTF-8, BOM, CRLF,
truncated lines, extra or missing fields, huge fields, deep JSON nesting). Whatever the file,
loading it into the real database:
- never fails the batch (its header is intact) and never raises;
- accounts for every physical line: loaded, or rejected with file, line and reason;
- never writes a personal value into a reason or a record id;
- keeps every revocation line whose id and scope are intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources import helpdesk
from sources.loader import load_batch

FUZZ = settings(
    max_examples=int(os.environ.get("CONSENT_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same cases in every run; raise the count to explore further
)

TICKET_HEADER = ",".join(helpdesk.TICKETS.column_names).encode()
FIRST = ["Анна", "Пётр", "Ольга", "Ибрагим", "Мария", "Сергей", "Фёкла", "Илья"]
LAST = ["Соколова", "Ким", "Иванов", "Петрова", "Кузнецов", "Смирнова", "Попов", "Ли"]


@dataclass
class Line:
    data: bytes
    revocation_id: str | None = None  # set while the line is a revocation with id and scope intact
    pii: tuple[str, ...] = ()


def _ticket(n: int, revoke: bool) -> Line:
    name = f"{LAST[n % 8]} {FIRST[(n * 3) % 8]}"
    phone = f"+7903555{n:04d}"
    email = f"client{n}@example.ru"
    passport = f"46{n:02d} 3456{n:02d}"
    request = "revoke_consent" if revoke else "complaint"
    scope = "marketing,all" if revoke else ","
    fields = (
        f"HD-{n},2024-06-10T10:{n % 60:02d}:00,{request},{name},1980-01-{n % 28 + 1:02d},"
        f"{phone},{email},{passport},KR-{n},{scope},https://scans.example.ru/{n}.pdf,"
    )
    return Line(fields.encode(), f"HD-{n}" if revoke else None, (name, phone, email, passport))


def _event(n: int, withdraw: bool) -> Line:
    person = {
        "last_name": LAST[n % 8],
        "first_name": FIRST[(n * 5) % 8],
        "birth_date": f"1985-02-{n % 28 + 1:02d}",
        "phone": f"+7916444{n:04d}",
        "email": f"web{n}@example.ru",
    }
    event = {
        "event_id": f"EV-{n}",
        "occurred_at": f"2024-06-10T11:{n % 60:02d}:00",
        "event_type": "consent_withdrawn" if withdraw else "consent_given",
        "account_id": f"ACC-{n}",
        "person": person,
        "consents": [{"consent_code": "ads_sms", "granted": not withdraw}],
        "form_id": "profile",
        "confirmation": "sms_code",
        "ip": f"10.0.{n}.1",
        "evidence_url": None,
    }
    pii = (person["last_name"] + person["first_name"], person["phone"], person["email"])
    return Line(
        json.dumps(event, ensure_ascii=False).encode(), f"EV-{n}" if withdraw else None, pii
    )


POISON = st.sampled_from([b'"', b"\x00", b"\xff", b"\xd0", b",", b"\r", b"\\", b"\xef\xbb\xbf"])


@st.composite
def line_mutation(draw, json_lines: bool):
    """(kind, payload): a change to one line; kinds that keep id and scope say so."""
    kind = draw(
        st.sampled_from(
            [
                "insert",
                "truncate",
                "extra_field",
                "drop_field",
                "huge_field",
                "blank",
                "garbage",
                "nest" if json_lines else "quote_field",
                "damage_unneeded",
            ]
        )
    )
    if kind == "insert":
        return kind, (draw(st.integers(0, 400)), draw(POISON))
    if kind == "truncate":
        return kind, draw(st.integers(0, 200))
    if kind == "garbage":
        return kind, draw(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b))
    if kind == "damage_unneeded":
        return kind, draw(
            st.sampled_from([b"31.12.1980", b"\xff\xfe", b"\x00", b"1980-13-45", b"\xd0"])
        )
    return kind, None


def _mutate(line: Line, mutation, json_lines: bool) -> Line:
    kind, payload = mutation
    data = line.data
    keeps_stop = False
    if kind == "insert":
        at, poison = payload
        data = data[:at] + poison + data[at:]
    elif kind == "truncate":
        data = data[:payload]
    elif kind == "extra_field":
        data = data + b",extra"
    elif kind == "drop_field":
        data = data[: data.rfind(b",")] if b"," in data else b""
    elif kind == "huge_field":
        data = data + (b',"' + b"x" * 300_000 + b'"')
    elif kind == "blank":
        data = b""
    elif kind == "garbage":
        data = payload
    elif kind == "nest":
        data = b'{"event_id": "X", "deep": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    elif kind == "quote_field":
        data = data.replace(b",", b',"', 1)  # an opening quote that is never closed
    elif kind == "damage_unneeded":
        # only a field the revocation does not need: the birth date (tickets, web persons)
        marker = b'"birth_date": "'
        if json_lines and marker in data:
            start = data.index(marker) + len(marker)
            end = data.index(b'"', start)
            data = data[:start] + payload + data[end:]
            keeps_stop = True
        elif not json_lines and data.count(b",") >= 5:
            fields = data.split(b",")
            start = sum(len(f) + 1 for f in fields[:4])
            data = data[:start] + payload + data[start + len(fields[4]) :]
            keeps_stop = True
    return Line(data, line.revocation_id if keeps_stop else None, line.pii)


@st.composite
def hostile_file(draw, json_lines: bool):
    count = draw(st.integers(3, 12))
    make = _event if json_lines else _ticket
    lines = [make(n, draw(st.booleans())) for n in range(1, count + 1)]
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, count - 1))
        lines[index] = _mutate(lines[index], draw(line_mutation(json_lines)), json_lines)
    crlf = draw(st.booleans())
    bom = draw(st.booleans()) and not json_lines
    trailing_newline = draw(st.booleans())
    return lines, crlf, bom, trailing_newline


def _write(folder: Path, name: str, header: bytes | None, file) -> int:
    """Write the file; returns the number of physical data lines."""
    lines, crlf, bom, trailing_newline = file
    end = b"\r\n" if crlf else b"\n"
    body = end.join(line.data for line in lines) + (end if trailing_newline else b"")
    content = (b"\xef\xbb\xbf" if bom else b"") + (header + end if header else b"") + body
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    (folder / "_SUCCESS").touch()
    return body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)


def _check(conn, result, file, source: str, table: str, id_column: str, data_lines: int) -> None:
    lines = file[0]
    assert result.status == "loaded"
    (loaded,) = [f for f in result.files]
    assert loaded.rows_read == data_lines
    assert loaded.rows_loaded + loaded.rows_rejected == data_lines
    first = 2 if source == "helpdesk" else 1
    kept = {n for (n,) in conn.execute(f"select distinct _line_number from raw.{table}").fetchall()}
    rejected = {
        n
        for (n,) in conn.execute(
            "select distinct line_number from consent.dq_rejections "
            "where source = %s and severity = 'reject'",
            (source,),
        ).fetchall()
    }
    assert len(kept) == loaded.rows_loaded
    assert kept | rejected == set(range(first, first + data_lines)), "a line is unaccounted for"
    assert not kept & rejected, "a line is both loaded and rejected"
    texts = conn.execute(
        "select coalesce(reason, '') || ' ' || coalesce(record_id, '') "
        "from consent.dq_rejections where source = %s",
        (source,),
    ).fetchall()
    error = conn.execute("select coalesce(string_agg(error, ' '), '') from consent.ingest_batches")
    texts.append(error.fetchone())
    for (text,) in texts:
        for line in lines:
            for value in line.pii:
                assert value not in text
    ids = {i for (i,) in conn.execute(f"select {id_column} from raw.{table}").fetchall()}
    for line in lines:
        if line.revocation_id is not None:
            assert line.revocation_id in ids, f"revocation {line.revocation_id} was lost"


@FUZZ
@given(file=hostile_file(json_lines=False))
def test_hostile_ticket_files_lose_no_line_and_no_revocation(conn, file):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "helpdesk" / "2024-06-10"
        data_lines = _write(folder, "tickets.csv", TICKET_HEADER, file)
        result = load_batch(conn, "helpdesk", folder)
        _check(conn, result, file, "helpdesk", "helpdesk_tickets", "ticket_id", data_lines)
        revoked = conn.execute(
            "select count(*) from raw.helpdesk_tickets where request_type = 'revoke_consent' "
            "and scope_purposes = 'marketing' and scope_channels = 'all'"
        ).fetchone()[0]
        assert revoked >= sum(1 for line in file[0] if line.revocation_id)


@FUZZ
@given(file=hostile_file(json_lines=True))
def test_hostile_web_event_files_lose_no_line_and_no_withdrawal(conn, file):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "web" / "2024-06-10"
        data_lines = _write(folder, "events.jsonl", None, file)
        result = load_batch(conn, "web", folder)
        _check(conn, result, file, "web", "web_events", "event_id", data_lines)
        withdrawn = {
            event_id
            for (event_id,) in conn.execute(
                "select event_id from raw.web_event_consents where granted = 'false'"
            ).fetchall()
        }
        assert {line.revocation_id for line in file[0] if line.revocation_id} <= withdrawn
