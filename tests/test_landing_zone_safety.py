"""The landing zone cannot lead anywhere else: no symbolic links out of it, no hostile batch ids.

Every refused batch fails alone with one clear line naming the path, and is recorded as a failed
batch in consent.ingest_batches (bound, never spliced into SQL); a folder whose name cannot even
be stored is reported in the log and skipped. Nothing of a refused batch is loaded.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from sources.landing import (
    BATCH_ID_PATTERN,
    all_complete_batches,
    batch_id_problem,
    complete_batches,
    require_batch_id,
)
from sources.loader import load_batch, load_landing_zone
from sources.readers import BatchFileError

VALID = ["2024-06-01", "2024-06-01T10:00:00+03:00", "20240601", "batch_2.v3", "A" * 64]
INVALID = [
    "x'||(select 1)||'",
    "2024-06-01'; drop table raw.crm_clients; --",
    'quo"te',
    "a..b",
    "..",
    ".hidden",
    "-leading-dash",
    "has space",
    "semi;colon",
    "A" * 65,
    "Пакет-1",
    "",
]


@pytest.mark.parametrize("batch_id", VALID)
def test_ordinary_batch_ids_are_valid(batch_id):
    assert batch_id_problem(batch_id) is None
    assert require_batch_id(batch_id) == batch_id


@pytest.mark.parametrize("batch_id", INVALID)
def test_hostile_batch_ids_are_refused_with_one_escaped_line(batch_id):
    problem = batch_id_problem(batch_id)
    assert problem is not None and "\n" not in problem
    assert "not valid" in problem
    with pytest.raises(BatchFileError, match="not valid"):
        require_batch_id(batch_id)
    assert not BATCH_ID_PATTERN.fullmatch(batch_id) or ".." in batch_id


def _status(conn, source: str, batch_id: str):
    return conn.execute(
        "select status, error from consent.ingest_batches where source = %s and batch_id = %s",
        (source, batch_id),
    ).fetchone()


def _raw_rows(conn, table: str) -> int:
    return conn.execute(f"select count(*) from raw.{table}").fetchone()[0]


@pytest.fixture
def landing(tmp_path, examples) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    shutil.copytree(examples / "catalog", root / "catalog")
    return root


@pytest.fixture
def outside(tmp_path, examples) -> Path:
    """A complete crm batch outside the landing zone (what a link would lead to)."""
    folder = tmp_path / "elsewhere" / "2024-07-01"
    shutil.copytree(examples / "crm" / "2024-06-01", folder)
    return folder


def test_a_batch_folder_that_is_a_symlink_is_refused_and_recorded(conn, landing, outside):
    (landing / "crm").mkdir()
    link = landing / "crm" / "2024-07-01"
    link.symlink_to(outside, target_is_directory=True)
    (batch,) = complete_batches(landing, "crm")  # listed, so that its refusal is recorded
    with pytest.raises(BatchFileError) as refused:
        load_batch(conn, "crm", batch.path)
    message = str(refused.value)
    assert "\n" not in message and str(link) in message and "symbolic link" in message
    status, error = _status(conn, "crm", "2024-07-01")
    assert status == "failed" and error == message
    assert _raw_rows(conn, "crm_clients") == 0


def test_a_file_that_is_a_symlink_out_of_the_batch_is_refused(conn, landing, outside, tmp_path):
    secret = tmp_path / "secret.csv"  # e.g. another system's export, readable by this user
    shutil.copy(outside / "clients.csv", secret)
    folder = landing / "crm" / "2024-07-02"
    shutil.copytree(outside, folder)
    (folder / "clients.csv").unlink()
    (folder / "clients.csv").symlink_to(secret)
    with pytest.raises(BatchFileError, match=r"clients\.csv is a symbolic link; refused"):
        load_batch(conn, "crm", folder)
    assert _status(conn, "crm", "2024-07-02")[0] == "failed"
    assert _raw_rows(conn, "crm_clients") == 0


def test_a_symlinked_success_marker_or_source_folder_is_refused(conn, landing, outside, tmp_path):
    folder = landing / "crm" / "2024-07-03"
    shutil.copytree(outside, folder)
    (folder / "_SUCCESS").unlink()
    (folder / "_SUCCESS").symlink_to(tmp_path / "nowhere")  # dangling: still "complete"
    assert [b.batch_id for b in complete_batches(landing, "crm")] == ["2024-07-03"]
    with pytest.raises(BatchFileError, match=r"_SUCCESS is a symbolic link"):
        load_batch(conn, "crm", folder)

    # the whole source folder a link to somewhere else
    elsewhere = tmp_path / "other-share"
    elsewhere.mkdir()
    shutil.copytree(outside, elsewhere / "2024-06-05")
    (landing / "partner").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(BatchFileError, match=r"source folder .*partner is a symbolic link"):
        load_batch(conn, "partner", landing / "partner" / "2024-06-05")
    assert _status(conn, "partner", "2024-06-05")[0] == "failed"


@pytest.mark.parametrize(
    "name", ["x'||(select 1)||'", "2024-07-01'; create table public.pwned (); --", "a..b"]
)
def test_a_batch_folder_with_a_hostile_name_is_refused_and_recorded(conn, landing, outside, name):
    folder = landing / "crm" / name
    shutil.copytree(outside, folder)
    assert [b.batch_id for b in complete_batches(landing, "crm")] == [name]
    with pytest.raises(BatchFileError, match=r"batch folder refused: batch id .* is not valid"):
        load_batch(conn, "crm", folder)
    status, error = _status(conn, "crm", name)
    assert status == "failed" and "not valid" in error
    assert _raw_rows(conn, "crm_clients") == 0
    assert conn.execute("select to_regclass('public.pwned')").fetchone()[0] is None


def test_an_unprintable_folder_name_is_reported_and_skipped(conn, landing, outside, caplog):
    shutil.copytree(outside, landing / "crm" / "bad\nname")
    shutil.copytree(outside, landing / "crm" / "2024-07-04")
    if os.name == "posix":
        undecodable = os.fsencode(str(landing / "crm")) + b"/caf\xe9"
        shutil.copytree(outside, os.fsdecode(undecodable))
    with caplog.at_level(logging.WARNING, logger="sources.landing"):
        batches = all_complete_batches(landing)
    assert [(b.source, b.batch_id) for b in batches if b.source == "crm"] == [("crm", "2024-07-04")]
    warnings = [r.getMessage() for r in caplog.records]
    assert any("bad\\nname" in w and "not valid" in w for w in warnings)
    assert all("\n" not in w for w in warnings)
    # the good batches beside them load as usual
    results = load_landing_zone(conn, landing)
    assert {(r.source, r.batch_id, r.status) for r in results} >= {("crm", "2024-07-04", "loaded")}
