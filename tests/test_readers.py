"""Reading files in chunks keeps exact physical line numbers, whatever the rows look like."""

from __future__ import annotations

from pathlib import Path

from sources.readers import iter_chunks, parse_csv_chunk
from sources.spec import Rule

COLUMNS = ["id", "name", "note"]


def _parse(path: Path, chunk_bytes: int = 1 << 20):
    rows, problems = [], []
    for chunk in iter_chunks(path, first_line=2, chunk_bytes=chunk_bytes):
        table = parse_csv_chunk(chunk, COLUMNS)
        rows += list(zip(table["id"].to_pylist(), table["_line_number"].to_pylist(), strict=True))
        problems += chunk.problems
    return rows, problems


def test_line_numbers_survive_short_rows_long_rows_and_quoted_newlines(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(
        b"id,name,note\n"  # 1
        b"a,x,y\n"  # 2
        b"b,x\n"  # 3: too few fields
        b'c,"two\nlines",y\n'  # 4-5
        b"d,x,y,z\n"  # 6: too many fields
        b"e,x,y\n"  # 7
    )
    rows, problems = _parse(path)
    assert rows == [("a", 2), ("c", 4), ("e", 7)]
    assert [(p.line_number, p.rule) for p in problems] == [
        (3, Rule.COLUMN_COUNT),
        (6, Rule.COLUMN_COUNT),
    ]
    assert problems[0].reason == "expected 3 fields, found 2"


def test_bytes_that_are_not_utf8_are_repaired_and_flagged_on_their_line_only(tmp_path):
    # the loader decides once it knows whether the row carries a revocation (kept) or not
    path = tmp_path / "f.csv"
    path.write_bytes(b"id,name,note\na,x,y\nb,\xff\xfe,y\nc,x\x00z,y\nd,x,y\n")
    chunks = list(iter_chunks(path, first_line=2))
    assert chunks[0].damaged_lines == {
        3: "bytes at position 2 are not valid UTF-8",
        4: "a NUL byte at position 3",
    }
    rows, problems = _parse(path)
    assert rows == [("a", 2), ("b", 3), ("c", 4), ("d", 5)]
    assert problems == []


def test_a_stray_quote_never_swallows_the_lines_after_it(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(
        b"id,name,note\n"  # 1
        b'a,"Ivanov,y\n'  # 2: a quote that never closes
        b"b,x,y\n"  # 3
        b'c,"two\nlines",y\n'  # 4-5: a real value over two lines
        b"d,x,y\n"  # 6
    )
    rows, problems = _parse(path)
    assert rows == [("a", 2), ("b", 3), ("c", 4), ("d", 6)]
    assert [(p.line_number, p.severity) for p in problems] == [(2, "warn")]


def test_a_stray_quote_that_runs_to_the_end_of_the_file_is_taken_apart(tmp_path):
    path = tmp_path / "f.csv"
    body = b"".join(f"r{i},x,y\n".encode() for i in range(3, 200))
    path.write_bytes(b'id,name,note\nr2,"' + b"x" * 200_000 + b",y\n" + body + b"short\n")
    rows, problems = _parse(path)
    assert [n for _, n in rows] == list(range(2, 200))
    assert [(p.line_number, p.rule, p.severity) for p in problems] == [
        (2, Rule.COLUMN_COUNT, "warn"),
        (200, Rule.COLUMN_COUNT, "reject"),
    ]


def test_small_chunks_give_the_same_answer_as_one_chunk(tmp_path):
    path = tmp_path / "f.csv"
    lines = [b"id,name,note"] + [f"r{i},name {i},note".encode() for i in range(500)]
    lines.insert(100, b"bad,row")
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert _parse(path, chunk_bytes=97) == _parse(path)
    rows, problems = _parse(path, chunk_bytes=97)
    assert len(rows) == 500 and rows[-1] == ("r499", 502)
    assert [p.line_number for p in problems] == [101]
