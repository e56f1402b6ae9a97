"""`can-contact` and `segment` from the command line, and usage errors in one line.

The real console script runs as a subprocess over a database built by a whole `consent-center
run` of the worked example (tests/fixtures/README.md). Every expected answer below is worked by
hand from the fixture's files and its README, not read back from the product.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.cli_runs import CONSENT_CENTER, cli_env, copy_examples
from tests.conftest import fresh_database


def _cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [CONSENT_CENTER, *args],
        env={**os.environ, **(env or {}), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def built(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-answers")
    landing, home = copy_examples(root)
    with fresh_database(server_url) as url:
        env = cli_env(home, landing, url)
        result = _cli("run", env=env, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            clients = dict(
                conn.execute(
                    "select source || ':' || source_record_id, client_id from consent.client_xref"
                ).fetchall()
            )
        yield {"env": env, "root": root, "clients": clients}


# --- can-contact -------------------------------------------------------------------------

# the worked example's questions (tests/fixtures/README.md): (source, record, purpose, channel,
# at) -> may contact?
QUESTIONS = [
    ("crm", "K-3", "marketing", "call", "2024-06-10T12:00", True),
    ("web", "ACC-501", "marketing", "sms", "2024-06-10T12:00", False),
    ("crm", "K-1", "marketing", "sms", "2024-05-01T12:00", True),
    ("crm", "K-1", "marketing", "email", "2022-01-01T12:00", True),
    ("crm", "K-1", "marketing", "email", "2024-01-01T12:00", False),
    ("crm", "K-1", "marketing", "call", "2026-06-01T12:00", False),
    ("partner", "BETA:B-77", "marketing", "sms", "2024-03-01T12:00", True),
    ("partner", "BETA:B-77", "marketing", "call", "2024-03-01T12:00", False),
    ("crm", "K-2", "marketing", "sms", "2024-06-10T12:00", False),
    ("helpdesk", "HD-10", "processing", "post", "2024-06-10T12:00", True),
]


def _ask(built, source, record, purpose, channel, at, *extra):
    return _cli(
        "can-contact",
        "--source",
        source,
        "--record",
        record,
        "--purpose",
        purpose,
        "--channel",
        channel,
        "--at",
        at,
        *extra,
        env=built["env"],
    )


@pytest.mark.parametrize(("source", "record", "purpose", "channel", "at", "allowed"), QUESTIONS)
def test_can_contact_answers_the_worked_examples_questions_in_words_and_in_json(
    built, source, record, purpose, channel, at, allowed
):
    words = _ask(built, source, record, purpose, channel, at)
    assert words.returncode == 0, words.stderr
    first = words.stdout.splitlines()[0]
    assert first.startswith("YES " if allowed else "NO "), words.stdout
    assert f"{purpose}/{channel}" in first

    as_json = _ask(built, source, record, purpose, channel, at, "--json")
    assert as_json.returncode == 0, as_json.stderr
    (line,) = as_json.stdout.splitlines()  # one JSON object, on one line
    answer = json.loads(line)
    assert answer["allowed"] is allowed
    assert (answer["status"] == "granted") is allowed
    assert answer["client_id"] == built["clients"][f"{source}:{record}"]
    assert answer["at"].startswith(at) and answer["at"].endswith("+03:00")  # naive = Moscow
    for basis in answer["basis"]:
        assert {
            "event_id",
            "source",
            "source_record_id",
            "action",
            "effective_at",
            "evidence_url",
        } <= set(basis)
    if allowed:
        assert answer["basis"], "a granted answer names the grants it rests on"
        assert all(basis["action"] == "grant" for basis in answer["basis"])


def test_can_contact_json_names_the_deciding_events_of_the_fixture(built):
    # Maria's calls at 2024-06-10: card contract CARD-2023-0001 (CRM K-1, contract D-1, signed
    # 2023-03-10 14:20), rule M2, its scan as evidence
    call = json.loads(
        _ask(built, "crm", "K-3", "marketing", "call", "2024-06-10T12:00", "--json").stdout
    )
    assert call["status"] == "granted"
    assert call["valid_from"] == "2023-03-10T14:20:00+03:00"
    assert call["valid_to"] == "2026-03-10T14:20:00+03:00"  # 36 months
    ((basis),) = call["basis"]
    assert (basis["source"], basis["source_record_id"], basis["action"]) == ("crm", "K-1", "grant")
    assert basis["effective_at"] == "2023-03-10T14:20:00+03:00"
    assert basis["evidence_url"] == "https://scans.example.ru/CARD-2023-0001.pdf"

    # Maria's SMS at 2024-06-10: withdrawn on the website by EV-2 (2024-06-02 08:00)
    sms = json.loads(
        _ask(built, "web", "ACC-501", "marketing", "sms", "2024-06-10T12:00", "--json").stdout
    )
    assert (sms["allowed"], sms["status"]) == (False, "revoked")
    ((basis),) = sms["basis"]
    assert (basis["source"], basis["source_record_id"]) == ("web", "ACC-501")
    assert basis["effective_at"] == "2024-06-02T08:00:00+03:00"
    assert basis["action"] == "revoke"

    # Viktor's SMS at 2024-06-10: revoked by letter HD-10 (2024-06-03 10:42)
    letter = json.loads(
        _ask(built, "crm", "K-2", "marketing", "sms", "2024-06-10T12:00", "--json").stdout
    )
    assert (letter["allowed"], letter["status"]) == (False, "revoked")
    ((basis),) = letter["basis"]
    assert (basis["source"], basis["source_record_id"]) == ("helpdesk", "HD-10")
    assert basis["effective_at"] == "2024-06-03T10:42:00+03:00"
    assert basis["evidence_url"] == "https://scans.example.ru/letters/HD-10.pdf"


def test_can_contact_about_an_unknown_record_or_code_is_one_line_and_exit_1(built):
    for args in (
        ("crm", "K-404", "marketing", "call", "2024-06-10T12:00"),
        ("crm", "K-1", "adverts", "call", "2024-06-10T12:00"),
        ("crm", "K-1", "marketing", "pigeon", "2024-06-10T12:00"),
        ("crm", "K-1", "marketing", "call", "tomorrow"),
    ):
        result = _ask(built, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.stderr)
        assert result.stdout == ""


# --- segment -----------------------------------------------------------------------------

SEGMENT_CALLS = [  # marketing / call at 2024-06-10 12:00, worked by hand from the fixture
    ("crm", "K-1", "allowed"),  # Maria: card contract D-1, rule M2, until 2026-03-10
    ("crm", "K-3", "allowed"),  # Maria again (her second CRM record)
    ("web", "ACC-501", "allowed"),  # Maria's web account
    # Viktor refused calls (CALL_OK=false) and wrote letter HD-10, but partner BETA's
    # restriction of calls (2024-01-20 to 2026-01-20) is in force: restrictions win (rule 5)
    ("crm", "K-2", "restricted"),
    ("helpdesk", "HD-10", "restricted"),  # Viktor, through his letter
    ("partner", "BETA:B-77", "restricted"),  # Viktor, through his partner record
    ("crm", "K-404", "unknown_record"),  # nobody
]


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _counts(stderr: str) -> dict[str, int]:
    """`N records, P/C at T: allowed A, no_consent B, ...` -> {category: count}.

    The summary is one message, but the terminal may wrap it: its lines are joined again.
    """
    line = " ".join(line for line in stderr.splitlines() if line.strip())
    summary = line.split(": ", 1)[1].split("; list in ")[0]
    return {
        name: int(count.replace(",", ""))
        for name, count in (p.split() for p in summary.split(", "))
    }


def test_segment_counts_a_list_of_records_and_writes_the_list_in_file_order(built, tmp_path):
    people = _write_csv(
        tmp_path / "people.csv",
        ["source", "source_record_id"],
        [(source, record) for source, record, _ in SEGMENT_CALLS],
    )
    out = tmp_path / "list.csv"
    args = ("--purpose", "marketing", "--channel", "call", "--at", "2024-06-10T12:00")
    result = _cli("segment", str(people), *args, "--out", str(out), env=built["env"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the list went to --out
    expected_counts = {
        "allowed": 3,
        "no_consent": 0,
        "expired": 0,
        "revoked": 0,
        "restricted": 3,
        "unknown_record": 1,
    }
    assert _counts(result.stderr) == expected_counts
    assert result.stderr.startswith("7 records, marketing/call at 2024-06-10T12:00:00+03:00")

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["source"], r["source_record_id"], r["result"]) for r in rows] == SEGMENT_CALLS
    assert [r["line_number"] for r in rows] == [str(n) for n in range(2, 9)]  # file lines
    assert [r["allowed"] for r in rows] == ["t"] * 3 + ["f"] * 4
    maria, viktor = built["clients"]["crm:K-1"], built["clients"]["crm:K-2"]
    assert [r["client_id"] for r in rows] == [maria] * 3 + [viktor] * 3 + [""]
    assert all(r["basis_event_id"] for r in rows[:6]) and rows[6]["basis_event_id"] == ""

    # without --out the same list goes to standard output, the counts to standard error
    streamed = _cli("segment", str(people), *args, env=built["env"])
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == out.read_text(encoding="utf-8")
    assert _counts(streamed.stderr) == expected_counts


def test_segment_by_client_id_tells_expired_from_no_consent(built, tmp_path):
    # marketing / email at 2024-01-01: Maria's deposit e-mail consent ran 36 months from
    # 2020-07-01 (expired), her web consent comes only on 2024-06-01; Viktor never gave one
    maria, viktor = built["clients"]["crm:K-1"], built["clients"]["crm:K-2"]
    people = _write_csv(
        tmp_path / "clients.csv", ["client_id"], [(maria,), (viktor,), ("C-NOBODY",)]
    )
    result = _cli(
        "segment",
        str(people),
        "--purpose",
        "marketing",
        "--channel",
        "email",
        "--at",
        "2024-01-01T12:00",
        env=built["env"],
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["client_id"], r["result"]) for r in rows] == [
        (maria, "expired"),
        (viktor, "no_consent"),
        ("C-NOBODY", "unknown_record"),
    ]
    assert _counts(result.stderr) == {
        "allowed": 0,
        "no_consent": 1,
        "expired": 1,
        "revoked": 0,
        "restricted": 0,
        "unknown_record": 1,
    }


def test_segment_with_a_bad_file_is_one_line_and_exit_1(built, tmp_path):
    bad_header = _write_csv(tmp_path / "bad.csv", ["phone"], [("+79035551234",)])
    missing = tmp_path / "missing.csv"
    for path in (bad_header, missing):
        result = _cli(
            "segment", str(path), "--purpose", "marketing", "--channel", "sms", env=built["env"]
        )
        assert result.returncode == 1, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr


# --- usage errors ------------------------------------------------------------------------

USAGE_ERRORS = [
    (["can-contact", "--source", "crm"], "--record"),  # missing options
    (["can-contact"], "--source"),
    (["segment"], "file"),  # a missing argument
    (["no-such-command"], "no-such-command"),
    (["run", "--no-such-option"], "--no-such-option"),
    (["generate", "--clients", "many"], "--clients"),  # a value of the wrong type
    (["grant", "--role"], "--role"),  # an option without its value
]


@pytest.mark.parametrize(("args", "named"), USAGE_ERRORS)
def test_every_usage_error_is_one_line_on_stderr_and_exit_2(args, named, tmp_path):
    # no database is needed to refuse a command line; CONSENT_HOME points nowhere useful
    result = _cli(*args, env={"CONSENT_HOME": str(tmp_path / "home")}, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and named in lines[0], lines[0]
    assert "--help" in lines[0]  # where to look
    assert not any(ch in result.stderr for ch in "╭╰│")  # no box
    assert result.stdout == ""


def test_help_is_still_help_and_exits_0(tmp_path):
    result = _cli("can-contact", "--help", env={"CONSENT_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    assert "--purpose" in result.stdout and "--json" in result.stdout
