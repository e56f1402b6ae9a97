"""Form and wording validation (issue 6), on generated feeds staged by a real `dbt build`.

The generator's deliberately bad rows (truth/bad_rows.csv, stage 'validate') must each be caught
by the rule meant for them and nothing else rejected; every other rule is shown to catch a row
injected for it; a broken catalog in force stops derivation through the blocking asset check.
"""

from __future__ import annotations

import csv
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from expectations.rules import RULES
from tests.conftest import fresh_database, load_and_stage

INJECTED_LINE = 900_000  # line numbers of injected rows: far past any generated line


@pytest.fixture(scope="module")
def feeds(tmp_path_factory) -> Path:
    from sources.generator import GeneratorConfig, generate

    out = tmp_path_factory.mktemp("feeds")
    generate(out, GeneratorConfig(clients=600, seed=7, bad_row_rate=0.08))
    return out


@pytest.fixture(scope="module")
def staged(server_url, feeds, tmp_path_factory):
    """(url, home): generated feeds loaded and staged by dbt, in a database of their own."""
    home = tmp_path_factory.mktemp("home")
    with fresh_database(server_url) as url:
        load_and_stage(url, feeds, select="path:models/staging")
        yield url, home


def _validate(url: str, home: Path):
    from expectations.validate import validate_forms

    with psycopg.connect(url, autocommit=True) as conn:
        return validate_forms(conn, home, home / "reports", url)


def _restage(url: str, batches: set[str]) -> None:
    """Type the raw rows injected into these batches: staging takes a batch again once it was
    loaded again, so the batches are marked as a re-load marks them, then staging is built."""
    from pipelines.dbt_cli import run_dbt

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update consent.ingest_batches set finished_at = clock_timestamp() "
            "where batch_id = any(%s)",
            (sorted(batches),),
        )
    run_dbt(url, "run", "--select", "staging")  # models only: the injected rows break tests


def _validate_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select source, batch_id, file_name, line_number, record_id, rule, severity, reason "
            "from consent.dq_rejections where stage = 'validate'"
        ).fetchall()


def _truth(feeds: Path) -> dict[tuple, tuple[str, str]]:
    with open(feeds / "truth" / "bad_rows.csv", encoding="utf-8") as f:
        return {
            (r["source"], r["batch_id"], r["file_name"], int(r["line_number"])): (
                r["rule"],
                r["record_id"],
            )
            for r in csv.DictReader(f)
            if r["stage"] == "validate"
        }


# rules that fire on generated feeds by design, as warnings only (see expectations/README.md)
EXPECTED_WARNINGS = {"missing_evidence", "implausible_birth_date", "garbled_scope"}


def test_every_deliberately_bad_row_is_caught_by_its_rule_and_nothing_else_rejected(staged, feeds):
    url, home = staged
    report = _validate(url, home)
    truth = _truth(feeds)
    assert truth, "the generator wrote no validate-stage bad rows"
    rows = _validate_rows(url)
    found: dict[tuple, set[str]] = {}
    for source, batch, file_name, line, record_id, rule, severity, _ in rows:
        key = (source, batch, file_name, line)
        if key in truth:
            found.setdefault(key, set()).add(rule)
            # web elements are event_id#consent_index; truth names the event
            assert record_id.startswith(truth[key][1])
        else:
            assert severity == "warn" and rule in EXPECTED_WARNINGS, (source, rule, record_id)
    missed = {k: v for k, v in truth.items() if found.get(k) != {v[0]}}
    assert not missed, list(missed.items())[:5]
    assert not report.blocking_failures
    # doubtful revocations are reported but kept; grants with a bad wording are rejected
    severities = {(r[5], r[6]) for r in rows if (r[0], r[1], r[2], r[3]) in truth}
    assert ("garbled_scope", "warn") in severities
    assert ("wording_hash_mismatch", "reject") in severities
    assert all(r[4] is None or r[4] not in r[7] for r in rows)  # reasons never quote values
    # nor the row's personal data: every name, birth date, phone, e-mail, passport and address
    # of the line each rejection names, read from the feed file itself, is absent from its
    # reason and its field (which names a column, never a value)
    with psycopg.connect(url) as conn:
        named = conn.execute(
            "select source, batch_id, file_name, line_number, field, reason "
            "from consent.dq_rejections where stage = 'validate' and line_number is not null"
        ).fetchall()
    checked = 0
    for source, batch, file_name, line, field, reason in named:
        values = _personal_values(feeds / source / batch / file_name).get(line)
        if not values:
            continue
        checked += 1
        for value in values:
            assert value.lower() not in reason.lower(), (source, batch, line, reason)
            assert field is None or value.lower() not in field.lower(), (source, line, field)
    assert checked >= len(truth) // 2, (checked, len(truth))


PERSONAL_FIELDS = (
    "last_name",
    "first_name",
    "middle_name",
    "birth_date",
    "phone",
    "email",
    "passport",
    "address",
    "fio",
)
_personal_cache: dict[Path, dict[int, set[str]]] = {}


def _personal_values(path: Path) -> dict[int, set[str]]:
    """Line number (first and last physical line of a record) -> its personal values.

    Read from the feed file with the standard library, independently of the loader; values
    shorter than four characters (initials, blanks) are left out, as they match anything.
    """
    if path in _personal_cache:
        return _personal_cache[path]
    import io
    import json

    by_line: dict[int, set[str]] = {}
    text = path.read_bytes().decode("utf-8", errors="replace")
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.split("\n"), start=1):
            try:
                person = json.loads(line).get("person") or {}
            except (ValueError, AttributeError):
                continue
            by_line[number] = {str(v) for v in person.values() if v and len(str(v)) >= 4}
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        assert reader.fieldnames  # the header, read: line_num now counts it
        start = reader.line_num + 1
        for record in reader:
            values = {
                str(record.get(name) or "")
                for name in PERSONAL_FIELDS
                if len(str(record.get(name) or "")) >= 4
            }
            for number in (start, reader.line_num):
                by_line.setdefault(number, set()).update(values)
            start = reader.line_num + 1
    _personal_cache[path] = by_line
    return by_line


def test_a_clean_batch_passes_and_a_rerun_replaces_its_rows(staged, feeds):
    url, home = staged
    truth = _truth(feeds)
    _validate(url, home)
    first = _validate_rows(url)
    _validate(url, home)
    assert sorted(_validate_rows(url)) == sorted(first)  # replaced, not duplicated
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "select count(*) from consent.dq_rejections where stage = 'validate' "
            "and severity = 'reject' and (source, batch_id, file_name, line_number) not in "
            "(select * from unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]))",
            [list(col) for col in zip(*truth.keys(), strict=True)],
        ).fetchone() == (0,)
        summary = conn.execute(
            "select rule, rows, example_record_ids from consent.dq_summary "
            "where stage = 'validate' and source = 'web' and rule = 'wording_not_in_force'"
        ).fetchone()
    assert summary[1] == sum(1 for r, _ in truth.values() if r == "wording_not_in_force")
    assert 1 <= len(summary[2]) <= 5 and all(i.startswith("EV-") for i in summary[2])
    page = (home / "reports" / "dq_summary.html").read_text(encoding="utf-8")
    assert "wording_not_in_force" in page and "garbled_scope" in page


# (raw table, {column: value}, expected rule): one injected row per rule; None = copy a real row
def _injections(conn) -> list[tuple[str, dict, str]]:
    cur_types = conn.execute("select max(_batch_id) from raw.catalog_consent_types").fetchone()[0]
    old = conn.execute("select min(_batch_id) from raw.catalog_consent_types").fetchone()[0]
    assert cur_types != old
    w = dict(
        zip(
            ("consent_code", "wording_version", "effective_from", "text", "text_sha256"),
            conn.execute(
                "select consent_code, wording_version, effective_from, text, text_sha256 "
                "from raw.catalog_wordings where _batch_id = %s and consent_code = 'ads_email'",
                (cur_types,),
            ).fetchone(),
            strict=True,
        )
    )
    return [
        (
            "web_event_consents",
            {"consent_code": "ads_email", "wording_version": "9"},
            "unknown_wording_version",
        ),
        ("web_events", {"evidence_url": None, "_with_consent": "1"}, "missing_evidence"),
        (
            "web_events",
            {"occurred_at": "2099-01-01T10:00:00", "_with_consent": "1"},
            "signed_in_future",
        ),
        ("web_event_consents", {"_duplicate": "1"}, "duplicate_source_id"),
        ("web_events", {"birth_date": "1850-01-01"}, "implausible_birth_date"),
        ("crm_consent_flags", {"value": "true", "scan_url": "", "set_by": ""}, "missing_evidence"),
        ("crm_consent_flags", {"set_at": "2099-05-01T10:00:00"}, "signed_in_future"),
        (
            "crm_contracts",
            {"contract_number": "CARD-2023-000000001", "product_type": "LOAN"},
            "contract_mask_mismatch",
        ),
        (
            "crm_contracts",
            {"signed_at": "2024-01-10T10:00:00", "closed_at": "2023-01-01T10:00:00"},
            "effective_range_inverted",
        ),
        ("crm_contracts", {"_duplicate": "1"}, "duplicate_source_id"),
        ("crm_clients", {"birth_date": "2030-01-01"}, "implausible_birth_date"),
        ("helpdesk_tickets", {"received_at": "2099-01-01T10:00:00"}, "signed_in_future"),
        (
            "helpdesk_tickets",
            {"received_at": "2024-01-10T10:00:00", "closed_at": "2023-01-01T10:00:00"},
            "effective_range_inverted",
        ),
        ("partner_clients", {"restricted_channels": "pigeon"}, "unknown_channel"),
        (
            "partner_clients",
            {
                "granted": "true",
                "obtained_at": "2024-01-10T10:00:00",
                "valid_until": "2023-01-01T10:00:00",
            },
            "effective_range_inverted",
        ),
        ("partner_clients", {"granted": "true", "evidence_url": ""}, "missing_evidence"),
        ("partner_clients", {"_duplicate": "1"}, "duplicate_source_id"),
        (
            "catalog_product_matrix",
            {"rule_id": "X01", "consent_code": "ads_nope", "_batch": cur_types},
            "catalog_unknown_consent_type",
        ),
        (
            "catalog_product_matrix",
            {
                "rule_id": "X02",
                "consent_code": "ads_email",
                "wording_version": "7",
                "_batch": cur_types,
            },
            "catalog_unknown_wording",
        ),
        (
            "catalog_wordings",
            {**w, "wording_version": "x", "text_sha256": "00", "_batch": old},
            "catalog_text_hash_mismatch",
        ),
        (
            "catalog_wordings",
            {
                **w,
                "wording_version": "y",
                "effective_from": "2020-01-01",
                "effective_to": "2019-01-01",
                "_batch": old,
            },
            "effective_range_inverted",
        ),
    ]


def _inject(conn, table: str, values: dict, line: int) -> tuple[str, str]:
    """Copy a real staged-clean row of `table`, change `values`, give it a new line number."""
    values = dict(values)
    batch = values.pop("_batch", None)
    duplicate = values.pop("_duplicate", None)
    with_consent = values.pop("_with_consent", None)
    where = "where _batch_id = %s" if batch else ""
    src = conn.execute(
        f"select * from raw.{table} {where} order by _line_number limit 1",
        (batch,) if batch else (),
    ).fetchone()
    names = [d.name for d in conn.execute(f"select * from raw.{table} limit 0").description]
    row = dict(zip(names, src, strict=True))
    if table == "web_event_consents" and not duplicate:
        row["consent_index"] = "5"
    if table == "web_events" and with_consent:
        # an event with one granted ads_email element, both on the new line
        row["event_id"] = f"EV-INJ{line}"
        conn.execute(
            "insert into raw.web_event_consents (event_id, consent_index, consent_code, granted,"
            " wording_version, wording_sha256, _batch_id, _file_name, _line_number) "
            "select %s, '0', consent_code, 'true', wording_version, text_sha256, %s, %s, %s "
            "from raw.catalog_wordings where consent_code = 'ads_email' limit 1",
            (row["event_id"], row["_batch_id"], row["_file_name"], line),
        )
    elif table in ("web_events",):
        row["event_id"] = f"EV-INJ{line}"
    row.update(values)
    row["_line_number"] = line
    cols = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join(["%s"] * len(row))
    params = [Jsonb(v) if isinstance(v, dict) else v for v in row.values()]
    conn.execute(f"insert into raw.{table} ({cols}) values ({marks})", params)
    return row["_batch_id"], row["_file_name"]


def test_each_rule_catches_the_row_injected_for_it(staged):
    url, home = staged
    with psycopg.connect(url) as conn:
        cases = []
        for n, (table, values, rule) in enumerate(_injections(conn)):
            line = INJECTED_LINE + n
            batch, file_name = _inject(conn, table, values, line)
            cases.append((batch, file_name, line, rule, table))
        conn.commit()
    try:
        _restage(url, {c[0] for c in cases})
        report = _validate(url, home)
        rows = _validate_rows(url)
        for batch, file_name, line, rule, table in cases:
            rules = {r[5] for r in rows if (r[1], r[2], r[3]) == (batch, file_name, line)}
            assert rule in rules, (table, rule, rules)
        # the old catalog batch is broken, the one in force is not: reported, not blocking
        assert not [f for f in report.blocking_failures if "text_hash" in f]
        assert any(f.startswith("catalog_unknown_consent_type") for f in report.blocking_failures)
        covered = {c[3] for c in cases} | {
            "wording_hash_mismatch",
            "wording_not_in_force",
            "garbled_scope",
            "unknown_consent_code",
        }
        never = {r.code for r in RULES} - covered
        assert never <= {
            "missing_required",
            "unknown_code",
            "catalog_overlapping_rules",
            "catalog_overlapping_wordings",
        }, never
    finally:
        with psycopg.connect(url) as conn:
            for table in {c[4] for c in cases} | {"web_event_consents"}:
                conn.execute(f"delete from raw.{table} where _line_number >= %s", (INJECTED_LINE,))
        _restage(url, {c[0] for c in cases})
        _validate(url, home)


def test_overlapping_matrix_rules_block_derivation_and_the_run_says_why(staged, monkeypatch):
    from dagster import AssetKey, asset, materialize

    from assets.quality import form_validation
    from pipelines.resources import ConsentCenterResource

    url, home = staged
    with psycopg.connect(url) as conn:
        cur = conn.execute("select max(_batch_id) from raw.catalog_product_matrix").fetchone()[0]
        # a second rule for MOBILE -> pd_basic over the same period
        conn.execute(
            "insert into raw.catalog_product_matrix select 'M99', match_kind, match_value, "
            "consent_code, wording_version, term_months, '2020-01-01', '', _batch_id, _file_name, "
            "%s from raw.catalog_product_matrix where _batch_id = %s and rule_id = 'M01'",
            (INJECTED_LINE, cur),
        )
        conn.commit()

    derived = []

    @asset(key=AssetKey(["consent", "derived_for_test"]), deps=[form_validation.key])
    def derivation():
        derived.append(True)

    monkeypatch.setenv("CONSENT_DATABASE_URL", url)
    monkeypatch.setenv("CONSENT_HOME", str(home))
    try:
        result = materialize(
            [form_validation, derivation],
            resources={"consent_center": ConsentCenterResource()},
            raise_on_error=False,
        )
        assert not derived, "derivation ran on a broken catalog"
        assert not result.success
        check = next(
            e for e in result.get_asset_check_evaluations() if e.check_name == "catalog_consistency"
        )
        assert not check.passed
        assert "catalog_overlapping_rules" in check.description
        assert "M99" in check.description and "M01" in check.description
    finally:
        with psycopg.connect(url) as conn:
            conn.execute(
                "delete from raw.catalog_product_matrix where _line_number >= %s",
                (INJECTED_LINE,),
            )
        _validate(url, home)
