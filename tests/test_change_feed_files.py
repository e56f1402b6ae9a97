"""Change-feed files follow the table (DESIGN section 6): every change_id in exactly one file.

consent.consent_change is the truth. A run killed between the commit and the file, a file
deleted or cut short, a file left half-written by an older version: on the next run the files of
every missing range are written again from the table, atomically.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from assets.change_feed import sync_change_files
from tests.cli_runs import CONSENT_CENTER, cli_env, copy_examples, kill_9, start_paused
from tests.conftest import EXAMPLES, STORY_CLOCK, fresh_database

LETTER = (
    "HD-11,2025-03-03T09:00:00,revoke_consent,Соколова М.А.,1988-11-02,+79035551234,,,,"
    "marketing,email,https://scans.example.ru/letters/HD-11.pdf,\n"
)


def _table(conn: psycopg.Connection) -> dict[int, dict]:
    return {
        row["change_id"]: row
        for (row,) in conn.execute(
            "select row_to_json(c) from consent.consent_change c order by change_id"
        )
    }


def assert_files_match_the_table(conn: psycopg.Connection, folder: Path) -> list[Path]:
    """Every change_id of the table in exactly one file, each line equal to its row."""
    files = sorted(folder.glob("changes-*.jsonl"))
    seen: dict[int, dict] = {}
    for path in files:
        first, last = (int(part) for part in path.stem.split("-")[1:])
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            assert row["change_id"] not in seen, f"change {row['change_id']} twice"
            assert first <= row["change_id"] <= last, path.name
            seen[row["change_id"]] = row
    table = _table(conn)
    assert table, "no change was published"
    assert seen == table
    assert not list(folder.glob(".*.tmp"))
    return files


@pytest.fixture(scope="module")
def fed(server_url, tmp_path_factory):
    """Run 1 killed with kill -9 after its changes were committed, before their file; run 2."""
    root = tmp_path_factory.mktemp("change-files")
    landing, home = copy_examples(root)
    with fresh_database(server_url) as url:
        # at the stories' instant: the letter must find Maria's e-mail consent still granted
        # (it runs out in 2027), whatever CONSENT_NOW the session runs at
        env = cli_env(home, landing, url, CONSENT_NOW=STORY_CLOCK.isoformat())
        killed, marker = start_paused(
            [CONSENT_CENTER, "run"],
            env,
            home,
            "change_feed_committed",
            timeout=900,
            what="run 1 never reached its change feed",
            poll=0.5,
        )
        kill_9(killed)
        marker.unlink()
        folder = home / "reports" / "changes"
        with psycopg.connect(url, autocommit=True) as conn:
            committed = conn.execute("select count(*) from consent.consent_change").fetchone()[0]
        files_after_kill = sorted(folder.glob("changes-*.jsonl"))

        # Maria writes to stop e-mails; the letter arrives in a new batch; run 2
        header = (EXAMPLES / "helpdesk" / "2024-06-03" / "tickets.csv").read_text()
        batch = landing / "helpdesk" / "2025-03-04"
        batch.mkdir()
        (batch / "tickets.csv").write_text(header.splitlines()[0] + "\n" + LETTER)
        (batch / "_SUCCESS").touch()
        second = subprocess.run(
            [CONSENT_CENTER, "run"], env=env, capture_output=True, text=True, timeout=900
        )
        assert second.returncode == 0, second.stdout + second.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            yield {
                "conn": conn,
                "folder": folder,
                "committed": committed,
                "files_after_kill": files_after_kill,
                # read now: a test below appends publications of its own
                "after_run_2": _table(conn),
            }


def test_changes_committed_by_a_killed_run_get_their_file_on_the_next_run(fed):
    assert fed["committed"] > 0 and fed["files_after_kill"] == []  # the window that was lost
    files = assert_files_match_the_table(fed["conn"], fed["folder"])
    table = fed["after_run_2"]
    # run 2 published the revocation, and only it
    assert [
        (row["purpose"], row["channel"], row["old_status"], row["new_status"])
        for change_id, row in sorted(table.items())
        if change_id > fed["committed"]
    ] == [("marketing", "email", "granted", "revoked")]
    assert all(oct(path.stat().st_mode & 0o777) == "0o600" for path in files)


def test_a_deleted_a_truncated_and_a_half_written_file_are_written_again(fed):
    conn, folder = fed["conn"], fed["folder"]
    assert sync_change_files(conn, folder) == []  # all there: nothing written

    # two more publications (as runs would append them), with what JSON must escape
    for status in ("revoked", "granted"):
        conn.execute(
            "insert into consent.consent_change (client_id, purpose, channel, partner_code, "
            "old_status, new_status, allowed, basis_event_ids) values "
            "(%s, 'marketing', 'sms', '', 'none', %s, false, %s)",
            ('C-"back\\slash"', status, ["ev\\1", "ev\n2"]),
        )
        assert len(sync_change_files(conn, folder)) == 1
    files = assert_files_match_the_table(conn, folder)
    assert len(files) == 3

    deleted, truncated, half_written = files[0], files[1], files[-1]
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    # a file an older version left half-written, never recorded
    conn.execute(
        "delete from consent.consent_change_files where file_name = %s", (half_written.name,)
    )
    half_written.write_bytes(half_written.read_bytes()[:10])
    (folder / f".{half_written.name}.999.tmp").write_text("left by a killed writer")

    rewritten = sync_change_files(conn, folder)
    assert sorted(rewritten) == sorted([deleted, truncated, half_written])
    assert assert_files_match_the_table(conn, folder) == files
    assert sync_change_files(conn, folder) == []
