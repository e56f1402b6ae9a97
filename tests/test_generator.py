"""Tests of the synthetic feed generator (sources/generator)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from sources.generator import GenerationSummary, GeneratorConfig, NoiseRates, generate
from sources.generator import truth as T
from sources.generator.histories import Person
from sources.generator.questions import ask
from sources.generator.writers import HEADERS
from tests.conftest import EXAMPLES

CSV_FILES = {name: src for (src, name) in HEADERS if name.endswith(".csv")}
WEB_KEYS = [
    "event_id",
    "occurred_at",
    "event_type",
    "account_id",
    "person",
    "consents",
    "form_id",
    "confirmation",
    "ip",
    "evidence_url",
]
PERSON_KEYS = ["last_name", "first_name", "middle_name", "birth_date", "phone", "email"]
CONSENT_KEYS = ["consent_code", "granted", "wording_version", "wording_sha256"]


# ----------------------------------------------------------------- helpers
def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_truth(root: Path, name: str) -> list[dict[str, str]]:
    with open(root / "truth" / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def bad_lines(root: Path) -> dict[tuple[str, str, str, int], dict[str, str]]:
    return {
        (r["source"], r["batch_id"], r["file_name"], int(r["line_number"])): r
        for r in read_truth(root, "bad_rows.csv")
    }


def feed_lines(root: Path):
    """(source, batch, file, line number, raw bytes) of every data line of the four feeds."""
    for source, name in HEADERS:
        for path in sorted((root / source).glob(f"*/{name}")):
            data = path.read_bytes()
            assert data.endswith(b"\n") or data == b""
            lines = data.split(b"\n")[:-1]
            first = 1 if name.endswith(".csv") else 0
            for n, raw in enumerate(lines[first:], start=first + 1):
                yield source, path.parent.name, name, n, raw


def parse_csv(raw: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(raw.decode("utf-8"))))


def ts_ok(s: str, optional: bool = False) -> bool:
    if s == "" and optional:
        return True
    try:
        datetime.fromisoformat(s)
    except ValueError:
        return False
    return True


def ingest_problem(source: str, name: str, raw: bytes) -> str | None:
    """A reference ingest check: the rule a row breaks, or None for a loadable row."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_encoding"
    if name == "events.jsonl":
        try:
            e = json.loads(text)
        except ValueError:
            return "invalid_json"
        if not e.get("account_id") or not e.get("event_id"):
            return "missing_required"
        if not ts_ok(e["occurred_at"]) or (
            e["person"]["birth_date"] is not None and not ts_ok(e["person"]["birth_date"])
        ):
            return "invalid_date"
        if e["event_type"] not in (
            "registration",
            "consent_given",
            "consent_withdrawn",
            "profile_update",
        ):
            return "unknown_value"
        if e["confirmation"] not in ("none", "email_link", "sms_code", "esia"):
            return "unknown_value"
        if any(not isinstance(c["granted"], bool) for c in e["consents"]):
            return "unknown_value"
        return None
    row = next(csv.reader(io.StringIO(text)))
    header = HEADERS[(source, name)]
    if len(row) != len(header):
        return "column_count"
    r = dict(zip(header, row, strict=True))
    if name == "clients.csv":
        if not r["crm_client_id"]:
            return "missing_required"
        if not ts_ok(r["birth_date"], True) or not ts_ok(r["updated_at"], True):
            return "invalid_date"
    elif name == "contracts.csv":
        if not r["contract_id"] or not r["crm_client_id"]:
            return "missing_required"
        if not ts_ok(r["signed_at"]) or not ts_ok(r["closed_at"], True):
            return "invalid_date"
    elif name == "consent_flags.csv":
        if not r["crm_client_id"]:
            return "missing_required"
        if not ts_ok(r["set_at"]):
            return "invalid_date"
        if r["value"] not in ("true", "false"):
            return "unknown_value"
    elif name == "tickets.csv":
        if not r["ticket_id"]:
            return "missing_required"
        if (
            not ts_ok(r["received_at"])
            or not ts_ok(r["closed_at"], True)
            or not ts_ok(r["birth_date"], True)
        ):
            return "invalid_date"
        if r["request_type"] not in (
            "revoke_consent",
            "erase_data",
            "restrict_processing",
            "access_request",
            "complaint",
        ):
            return "unknown_value"
    elif name == "partner_clients.csv":
        if not r["partner_client_id"] or not r["partner_code"]:
            return "missing_required"
        if (
            not ts_ok(r["obtained_at"])
            or not ts_ok(r["valid_until"], True)
            or not ts_ok(r["birth_date"], True)
        ):
            return "invalid_date"
        if r["granted"] not in ("true", "false"):
            return "unknown_value"
    return None


def load_facts(root: Path) -> tuple[T.Catalog, dict[str, T.Facts], set[tuple[str, str]]]:
    """Rebuild every person's facts from the feeds themselves (ingest-bad rows skipped)."""
    cat = T.Catalog.from_dir(sorted((root / "catalog").iterdir())[-1])
    person = {
        (r["source"], r["source_record_id"]): r["person_id"]
        for r in read_truth(root, "person_xref.csv")
    }
    bad = {k for k, v in bad_lines(root).items() if v["stage"] == "ingest"}
    facts: dict[str, T.Facts] = defaultdict(T.Facts)
    records: set[tuple[str, str]] = set()

    def dt(s: str) -> datetime:
        return datetime.fromisoformat(s)

    for source, batch, name, n, raw in feed_lines(root):
        if (source, batch, name, n) in bad:
            continue
        if name == "events.jsonl":
            e = json.loads(raw)
            records.add(("web", e["account_id"]))
            f = facts[person[("web", e["account_id"])]]
            for c in e["consents"]:
                f.web.append(
                    T.WebConsent(
                        c["consent_code"],
                        c["granted"],
                        c["wording_version"],
                        c["wording_sha256"],
                        dt(e["occurred_at"]),
                        e["confirmation"],
                    )
                )
            continue
        r = dict(zip(HEADERS[(source, name)], parse_csv(raw), strict=True))
        if name == "clients.csv":
            records.add(("crm", r["crm_client_id"]))
        elif name == "contracts.csv":
            facts[person[("crm", r["crm_client_id"])]].contracts.append(
                T.Contract(
                    r["contract_number"], r["system_code"], r["product_type"], dt(r["signed_at"])
                )
            )
        elif name == "consent_flags.csv":
            facts[person[("crm", r["crm_client_id"])]].ticks.append(
                T.Tick(r["flag_code"], r["value"] == "true", dt(r["set_at"]))
            )
        elif name == "tickets.csv":
            records.add(("helpdesk", r["ticket_id"]))
            facts[person[("helpdesk", r["ticket_id"])]].tickets.append(
                T.Ticket(
                    r["request_type"],
                    r["scope_purposes"],
                    r["scope_channels"],
                    dt(r["received_at"]),
                )
            )
        elif name == "partner_clients.csv":
            key = f"{r['partner_code']}:{r['partner_client_id']}"
            records.add(("partner", key))
            rc = r["restricted_channels"]
            facts[person[("partner", key)]].partner.append(
                T.PartnerRecord(
                    r["partner_code"],
                    r["consent_code"],
                    r["granted"] == "true",
                    dt(r["obtained_at"]),
                    dt(r["valid_until"]) if r["valid_until"] else None,
                    tuple(rc.split(";")) if rc else (),
                )
            )
    return cat, facts, records


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run20k(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("gen20k")
    return root, generate(root, GeneratorConfig(clients=20_000, seed=11))


@pytest.fixture(scope="module")
def run_small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen3k")
    generate(root, GeneratorConfig(clients=3_000, seed=5, batches=4, bad_row_rate=0.01))
    return root


# ----------------------------------------------------------------- tests
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    cfg = GeneratorConfig(clients=1_500, seed=42)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    generate(tmp_path / "c", GeneratorConfig(clients=1_500, seed=43))
    a, b, c = (digest(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) > 20
    differing = [k for k in a if k in c and a[k] != c[k] and "catalog" not in k]
    assert len(differing) > 10


def test_landing_layout_and_formats(run_small: Path) -> None:
    root = run_small
    for source in ("crm", "web", "helpdesk", "partner"):
        batches = sorted(p.name for p in (root / source).iterdir())
        assert len(batches) == 4
        for b in batches:
            date.fromisoformat(b)
            assert (root / source / b / "_SUCCESS").exists()
    cat_batches = sorted(p.name for p in (root / "catalog").iterdir())
    assert len(cat_batches) == 2
    for b in cat_batches:
        assert (root / "catalog" / b / "_SUCCESS").exists()
        T.Catalog.from_dir(root / "catalog" / b)  # parses
    for (source, name), header in HEADERS.items():
        for path in (root / source).glob(f"*/{name}"):
            data = path.read_bytes()
            assert b"\r" not in data
            if header:
                assert data.split(b"\n", 1)[0].decode() == ",".join(header)
    bad = bad_lines(root)
    n_json = 0
    for source, batch, name, n, raw in feed_lines(root):
        if name == "events.jsonl" and (source, batch, name, n) not in bad:
            e = json.loads(raw)
            assert list(e) == WEB_KEYS
            assert list(e["person"]) == PERSON_KEYS
            assert all(list(c) == CONSENT_KEYS for c in e["consents"])
            n_json += 1
    assert n_json > 100
    summary = read_truth(root, "expected_status.csv")
    assert summary and all(r["at"].endswith("+03:00") for r in summary)
    assert (root / "truth" / "README.md").read_text(encoding="utf-8").startswith("# Truth")


def test_only_deliberately_bad_rows_fail_ingest_checks(run_small: Path) -> None:
    root = run_small
    bad = bad_lines(root)
    seen = set()
    total = 0
    for source, batch, name, n, raw in feed_lines(root):
        total += 1
        key = (source, batch, name, n)
        problem = ingest_problem(source, name, raw)
        if key in bad and bad[key]["stage"] == "ingest":
            assert problem == bad[key]["rule"], (key, raw[:200])
            seen.add(key)
        else:
            assert problem is None, (key, problem, raw[:200])
    assert seen == {k for k, v in bad.items() if v["stage"] == "ingest"}
    rules = {v["rule"] for v in bad.values()}
    assert rules == {
        "column_count",
        "invalid_json",
        "invalid_date",
        "unknown_value",
        "missing_required",
        "invalid_encoding",
        "wording_hash_mismatch",
        "wording_not_in_force",
        "garbled_scope",
        "unknown_consent_code",
    }
    assert 0.5 * 0.01 < len(bad) / total < 2 * 0.01


def test_validate_stage_rows_are_what_they_claim(run_small: Path) -> None:
    root = run_small
    cat = T.Catalog.from_dir(sorted((root / "catalog").iterdir())[-1])
    bad = {k: v for k, v in bad_lines(root).items() if v["stage"] == "validate"}
    lines = {(s, b, f, n): raw for s, b, f, n, raw in feed_lines(root)}
    for key, v in bad.items():
        raw = lines[key]
        rule = v["rule"]
        if rule in ("wording_hash_mismatch", "wording_not_in_force") or key[2] == "events.jsonl":
            e = json.loads(raw)
            assert e["event_id"] == v["record_id"]
            c = e["consents"][0]
            w = cat.wording(c["consent_code"], c["wording_version"])
            at = datetime.fromisoformat(e["occurred_at"]).date()
            if rule == "wording_hash_mismatch":
                assert w is not None and w.in_force(at) and w.sha256 != c["wording_sha256"]
            elif rule == "wording_not_in_force":
                assert w is not None and not w.in_force(at) and w.sha256 == c["wording_sha256"]
            else:
                assert c["consent_code"] not in cat.types
        else:
            r = dict(zip(HEADERS[(key[0], key[2])], parse_csv(raw), strict=True))
            if rule == "garbled_scope":
                assert not T.scope_is_readable(r["scope_purposes"], r["scope_channels"])
            elif key[2] == "partner_clients.csv":
                assert r["consent_code"] not in cat.types
            else:
                assert r["flag_code"] not in cat.flag_map


def test_truth_refers_to_existing_records(run_small: Path) -> None:
    root = run_small
    _, _, records = load_facts(root)
    xref = read_truth(root, "person_xref.csv")
    keys = [(r["source"], r["source_record_id"]) for r in xref]
    assert len(keys) == len(set(keys))
    assert set(keys) == records  # every loaded person-bearing record, nothing else
    person = {(r["source"], r["source_record_id"]): r["person_id"] for r in xref}
    for q in read_truth(root, "expected_status.csv"):
        assert person[(q["source"], q["source_record_id"])] == q["person_id"]
    persons = set(person.values())
    assert len(persons) == 3_000


def test_expected_status_sample_covers_every_status_and_only_clean_persons(run20k) -> None:
    """The sample asks about every status, on concrete channels, never about a tainted person.

    Whether each answer is right is checked by hand in
    test_the_truth_writer_answers_hand_made_histories_as_worked_out_by_hand; here the answers
    are only counted."""
    root, _ = run20k
    questions = read_truth(root, "expected_status.csv")
    assert 3_000 < len(questions) < 6_000
    statuses = defaultdict(int)
    for q in questions:
        assert q["allowed"] == ("true" if q["status"] == T.GRANTED else "false"), q
        assert q["partner_code"] == "" and q["channel"] in T.CHANNELS
        statuses[q["status"]] += 1
    assert set(statuses) == {T.GRANTED, T.REVOKED, T.EXPIRED, T.RESTRICTED, T.NONE}
    for s in statuses:
        assert statuses[s] > len(questions) * 0.02, dict(statuses)
    bad_persons = set()
    person = {
        (r["source"], r["source_record_id"]): r["person_id"]
        for r in read_truth(root, "person_xref.csv")
    }
    for b in read_truth(root, "bad_rows.csv"):
        src = b["source"]
        rid = b["record_id"]
        if (src, rid) in person:
            bad_persons.add(person[(src, rid)])
    assert bad_persons
    assert not bad_persons & {q["person_id"] for q in questions}


def test_the_truth_answers_follow_from_the_feeds_read_back(run20k) -> None:
    """No hidden state: the facts read back from the feeds give every answer the generator wrote.

    This compares the feeds with the facts the generator held when it wrote the truth, through
    the same rules (truth.answer); it does not check the rules themselves (the hand-worked
    histories below do)."""
    root, _ = run20k
    cat, facts, _ = load_facts(root)
    questions = read_truth(root, "expected_status.csv")
    assert questions
    for q in questions:
        at = datetime.fromisoformat(q["at"]).replace(tzinfo=None)
        allowed, status = T.answer(cat, facts[q["person_id"]], q["purpose"], q["channel"], at)
        assert (("true" if allowed else "false"), status) == (q["allowed"], q["status"]), q


# ------------------------------------------- hand-made histories, statuses worked out by hand
# A catalog written out here (DESIGN section 5): two wordings of ads_sms (v1 until the end of
# 2021, v2 from 2022), a mobile tariff that grants processing for 120 months and ads_sms for 36,
# loans (contract numbers KR-...) that grant ads_call v1 for 12 months, a rule that ended with
# 2020. Fake hashes: the truth compares them, it does not compute them.
H = {"pd1": "a" * 64, "sms1": "b" * 64, "sms2": "c" * 64, "call1": "d" * 64, "mail1": "e" * 64}
HAND_CATALOG = T.Catalog(
    types={
        "pd_basic": T.ConsentType("pd_basic", "processing", "any", "", 120),
        "ads_sms": T.ConsentType("ads_sms", "marketing", "sms", "", 36),
        "ads_call": T.ConsentType("ads_call", "marketing", "call", "", 24),
        "ads_email": T.ConsentType("ads_email", "marketing", "email", "", 36),
    },
    wordings=[
        T.Wording("pd_basic", "1", date(2015, 1, 1), None, H["pd1"]),
        T.Wording("ads_sms", "1", date(2015, 1, 1), date(2021, 12, 31), H["sms1"]),
        T.Wording("ads_sms", "2", date(2022, 1, 1), None, H["sms2"]),
        T.Wording("ads_call", "1", date(2015, 1, 1), None, H["call1"]),
        T.Wording("ads_email", "1", date(2015, 1, 1), None, H["mail1"]),
    ],
    rules=[
        T.MatrixRule("R1", "system_code", "MOBILE", "pd_basic", "1", 120, date(2015, 1, 1), None),
        T.MatrixRule("R2", "system_code", "MOBILE", "ads_sms", None, 36, date(2015, 1, 1), None),
        T.MatrixRule(
            "R3", "contract_mask", "KR-%", "ads_call", "1", 12, date(2015, 1, 1), date(2020, 12, 31)
        ),
    ],
    flag_map={"SMS_OK": "ads_sms", "CALL_OK": "ads_call", "MAIL_OK": "ads_email"},
)
ASKED = [(p, c) for p in ("marketing", "processing") for c in T.CHANNELS]
NOT_ASKED = "not asked"  # the answer depends on a semantic choice: the writer must leave it out


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _hand_made_people() -> list[tuple[Person, dict]]:
    """Small histories and, for each, every (purpose, channel) status over time, worked out by
    hand from DESIGN section 7 (and the truth README's reading of it): a list of (from, status)
    steps; a pair not listed is `none` throughout (nothing grants it)."""
    d, people = _dt, []

    def person(pid: str, facts: T.Facts, timelines: dict) -> None:
        p = Person(pid, facts, records=[("crm", f"K-{pid}")])
        people.append((p, timelines))

    # Anna buys a mobile tariff in March 2019 and another in September 2021. Each grants
    # processing on every channel for 120 months (R1, channel any) and ads_sms for 36 (R2, the
    # wording in force at signing: v1 both times); a tariff never grants calls or e-mail (rule
    # 1). Each consent is valid over the union of its two intervals (rule 2): SMS to 1 September
    # 2024, processing to 1 September 2031; then it has expired.
    processing = [("2019-03-10T10:00", "granted"), ("2031-09-01T10:00", "expired")]
    person(
        "ANNA",
        T.Facts(
            contracts=[
                T.Contract("MOB-2019-1", "MOBILE", "MOBILE_TARIFF", d("2019-03-10T10:00")),
                T.Contract("MOB-2021-2", "MOBILE", "MOBILE_TARIFF", d("2021-09-01T10:00")),
            ]
        ),
        {
            ("marketing", "sms"): [
                ("2019-03-10T10:00", "granted"),
                ("2024-09-01T10:00", "expired"),
            ],
            **{("processing", c): processing for c in T.CHANNELS},
        },
    )
    # Boris: a tariff (February 2020) and CRM ticks for calls (24 months) and e-mail (36) five
    # minutes later. His letter of 15 January 2021 revokes marketing by SMS and calls (rule 3),
    # not e-mail (which expires with its tick's term) and not processing (120 months). In June
    # 2022 he agrees to SMS again on the website (v2, the wording in force, confirmed by SMS
    # code): that re-opens SMS for 36 months, not calls, which stay revoked even after the
    # tick's term would have ended.
    person(
        "BORIS",
        T.Facts(
            contracts=[T.Contract("MOB-2020-3", "MOBILE", "MOBILE_TARIFF", d("2020-02-01T10:00"))],
            ticks=[
                T.Tick("CALL_OK", True, d("2020-02-01T10:05")),
                T.Tick("MAIL_OK", True, d("2020-02-01T10:05")),
            ],
            tickets=[T.Ticket("revoke_consent", "marketing", "sms;call", d("2021-01-15T12:00"))],
            web=[T.WebConsent("ads_sms", True, "2", H["sms2"], d("2022-06-01T18:00"), "sms_code")],
        ),
        {
            ("marketing", "sms"): [
                ("2020-02-01T10:00", "granted"),
                ("2021-01-15T12:00", "revoked"),
                ("2022-06-01T18:00", "granted"),
                ("2025-06-01T18:00", "expired"),
            ],
            ("marketing", "call"): [
                ("2020-02-01T10:05", "granted"),
                ("2021-01-15T12:00", "revoked"),
            ],
            ("marketing", "email"): [
                ("2020-02-01T10:05", "granted"),
                ("2023-02-01T10:05", "expired"),
            ],
            **{
                ("processing", c): [
                    ("2020-02-01T10:00", "granted"),
                    ("2030-02-01T10:00", "expired"),
                ]
                for c in T.CHANNELS
            },
        },
    )
    # Clara: a web e-mail consent whose text hash is not the catalog's, and a web SMS consent
    # citing v1 after v1 ended, count for nothing (rule 1); neither does a tick of a flag the
    # catalog does not map. Her CRM SMS tick of April 2022 does (v2 in force); the CRM records
    # her refusal in May 2023 (a `false` tick revokes, rule 3 and DESIGN section 5).
    person(
        "CLARA",
        T.Facts(
            web=[
                T.WebConsent("ads_email", True, "1", "0" * 64, d("2020-05-01T12:00"), "email_link"),
                T.WebConsent("ads_sms", True, "1", H["sms1"], d("2022-03-01T12:00"), "sms_code"),
            ],
            ticks=[
                T.Tick("FAX_OK", True, d("2020-01-01T09:00")),
                T.Tick("SMS_OK", True, d("2022-04-01T09:00")),
                T.Tick("SMS_OK", False, d("2023-05-01T09:00")),
            ],
        ),
        {
            ("marketing", "sms"): [
                ("2022-04-01T09:00", "granted"),
                ("2023-05-01T09:00", "revoked"),
            ],
        },
    )
    # Dmitry: a tariff in June 2021 (SMS to June 2024, processing to June 2031); partner BETA
    # brings his call consent from 1 February 2022 until 1 February 2024 and restricts SMS over
    # the same interval (rule 5): SMS is restricted whatever the tariff says, and granted again
    # when the restriction ends, until the tariff's term. Whether the restriction also blocks
    # processing by SMS is a semantic choice, so the writer must not ask about it meanwhile.
    person(
        "DMITRY",
        T.Facts(
            contracts=[T.Contract("MOB-2021-4", "MOBILE", "MOBILE_TARIFF", d("2021-06-01T10:00"))],
            partner=[
                T.PartnerRecord(
                    "BETA",
                    "ads_call",
                    True,
                    d("2022-02-01T12:00"),
                    d("2024-02-01T12:00"),
                    ("sms",),
                )
            ],
        ),
        {
            ("marketing", "sms"): [
                ("2021-06-01T10:00", "granted"),
                ("2022-02-01T12:00", "restricted"),
                ("2024-02-01T12:00", "granted"),
                ("2024-06-01T10:00", "expired"),
            ],
            ("marketing", "call"): [
                ("2022-02-01T12:00", "granted"),
                ("2024-02-01T12:00", "expired"),
            ],
            **{
                ("processing", c): [
                    ("2021-06-01T10:00", "granted"),
                    ("2031-06-01T10:00", "expired"),
                ]
                for c in T.CHANNELS
            },
            ("processing", "sms"): [
                ("2021-06-01T10:00", "granted"),
                ("2022-02-01T12:00", NOT_ASKED),
                ("2024-02-01T12:00", "granted"),
                ("2031-06-01T10:00", "expired"),
            ],
        },
    )
    # Elena: a tariff in March 2020 (processing to March 2030); her letter of September 2020
    # names the purpose "маркетинг", which cannot be read, so it is honoured as every purpose on
    # the channel it names, SMS (rule 4): processing and marketing by SMS are revoked,
    # processing on other channels is not. Her e-mail consent of March 2021 came from a web form
    # nobody confirmed: whether it counts is a semantic choice, so from then on e-mail is not
    # asked about.
    person(
        "ELENA",
        T.Facts(
            contracts=[T.Contract("MOB-2020-5", "MOBILE", "MOBILE_TARIFF", d("2020-03-01T10:00"))],
            tickets=[T.Ticket("revoke_consent", "маркетинг", "sms", d("2020-09-01T12:00"))],
            web=[T.WebConsent("ads_email", True, "1", H["mail1"], d("2021-03-01T20:00"), "none")],
        ),
        {
            ("marketing", "sms"): [
                ("2020-03-01T10:00", "granted"),
                ("2020-09-01T12:00", "revoked"),
            ],
            ("marketing", "email"): [("2021-03-01T20:00", NOT_ASKED)],
            **{
                ("processing", c): [
                    ("2020-03-01T10:00", "granted"),
                    ("2030-03-01T10:00", "expired"),
                ]
                for c in T.CHANNELS
            },
            ("processing", "sms"): [
                ("2020-03-01T10:00", "granted"),
                ("2020-09-01T12:00", "revoked"),
            ],
        },
    )
    # Fedor: a loan signed on 29 February 2020 carries ads_call v1 for 12 months (R3, matched by
    # the contract-number mask): 29 February plus 12 months is 28 February 2021 (rule 2, months
    # clamped to the month's end). A second loan of March 2021 is signed after R3 ended: it
    # grants nothing (rule 1), so calls stay expired.
    person(
        "FEDOR",
        T.Facts(
            contracts=[
                T.Contract("KR-2020-6", "LOANS", "LOAN", d("2020-02-29T10:00")),
                T.Contract("KR-2021-7", "LOANS", "LOAN", d("2021-03-01T10:00")),
            ]
        ),
        {
            ("marketing", "call"): [
                ("2020-02-29T10:00", "granted"),
                ("2021-02-28T10:00", "expired"),
            ],
        },
    )
    return people


def _hand_worked(timeline: list[tuple[str, str]], at: datetime) -> str:
    status = T.NONE
    for since, then in timeline:
        if _dt(since) <= at:
            status = then
    return status


def test_the_truth_writer_answers_hand_made_histories_as_worked_out_by_hand() -> None:
    """expected_status.csv's writer (questions.ask), asked about hand-made histories at the
    instants it picks, answers what the hand-worked timelines say, and leaves out what a
    semantic choice decides."""
    t0, t_end = datetime(2019, 1, 1), datetime(2024, 12, 31)
    seen: dict[str, set[str]] = defaultdict(set)
    for person, timelines in _hand_made_people():
        asked = 0
        for seed in range(30):
            rows = ask(person, HAND_CATALOG, random.Random(seed), 20, t0, t_end)
            for pid, source, record, purpose, channel, partner, at, allowed, status in rows:
                assert (pid, source, record, partner) == (
                    person.person_id,
                    "crm",
                    f"K-{person.person_id}",
                    "",
                )
                assert (purpose, channel) in ASKED
                assert at.endswith("+03:00")  # Moscow wall-clock time, written with its zone
                moment = datetime.fromisoformat(at).replace(tzinfo=None)
                expected = _hand_worked(timelines.get((purpose, channel), []), moment)
                assert (status, allowed) == (
                    expected,
                    "true" if expected == T.GRANTED else "false",
                ), (person.person_id, purpose, channel, at)
                seen[person.person_id].add(f"{purpose}/{channel}/{status}")
                asked += 1
        assert asked > 100, person.person_id
    # the writer asked about every turn of every story
    stories = {
        "ANNA": {"marketing/sms/granted", "marketing/sms/expired", "marketing/call/none",
                 "processing/call/granted", "processing/call/expired"},
        "BORIS": {"marketing/sms/granted", "marketing/sms/revoked", "marketing/sms/expired",
                  "marketing/call/revoked", "marketing/email/expired", "processing/sms/granted"},
        "CLARA": {"marketing/sms/none", "marketing/sms/granted", "marketing/sms/revoked",
                  "marketing/email/none"},
        "DMITRY": {"marketing/sms/granted", "marketing/sms/restricted", "marketing/sms/expired",
                   "marketing/call/granted", "marketing/call/expired", "processing/sms/granted"},
        "ELENA": {"marketing/sms/revoked", "processing/sms/revoked", "processing/email/granted",
                  "marketing/email/none"},
        "FEDOR": {"marketing/call/granted", "marketing/call/expired"},
    }  # fmt: skip
    for who, turns in stories.items():
        assert turns <= seen[who], (who, turns - seen[who])
    # and at each turn itself: an hour after every step of every timeline begins, and an hour
    # before it ends, the writer's answer (truth.unambiguous, what it writes for an instant it
    # picked) is the hand-worked one, or none at all where a semantic choice decides
    hour = timedelta(hours=1)
    for person, timelines in _hand_made_people():
        derived = T.derive(HAND_CATALOG, person.facts)
        for (purpose, channel), timeline in timelines.items():
            steps = [(_dt(since), status) for since, status in timeline]
            probes = [(steps[0][0] - hour, T.NONE)]
            for (since, status), (until, _) in zip(steps, [*steps[1:], (None, None)], strict=True):
                probes.append((since + hour, status))
                if until is not None:
                    probes.append((until - hour, status))
            for at, status in probes:
                answer = T.unambiguous(derived, purpose, channel, at)
                assert answer == (None if status == NOT_ASKED else status), (
                    person.person_id,
                    purpose,
                    channel,
                    at,
                )
    # a person who asked to be erased, or carries a deliberately bad row, is not asked about
    anna, _ = _hand_made_people()[0]
    for flag in ("excluded", "tainted"):
        left_out = Person("ANNA", anna.facts, anna.records, **{flag: True})
        assert ask(left_out, HAND_CATALOG, random.Random(0), 20, t0, t_end) == []


def test_noise_rates_within_tolerance(run20k) -> None:
    root, summary = run20k
    noise = NoiseRates()
    initials = re.compile(r"^\S+ \w\.(\w\.)?$")
    bad = bad_lines(root)
    fio, upper, latin, crm_ids = [], [], [], []
    for source, batch, name, n, raw in feed_lines(root):
        if (source, batch, name, n) in bad:
            continue
        if name == "tickets.csv":
            fio.append(bool(initials.match(parse_csv(raw)[3])))
        elif name == "clients.csv":
            row = parse_csv(raw)
            upper.append(row[1].isupper())
            crm_ids.append(row[0])
        elif name == "events.jsonl":
            latin.append(json.loads(raw)["person"]["last_name"].isascii())
    assert len(fio) > 800 and len(upper) > 15_000 and len(latin) > 4_000
    assert abs(sum(fio) / len(fio) - noise.initials) < 0.05
    assert abs(sum(upper) / len(upper) - noise.upper_case) < 0.015
    assert abs(sum(latin) / len(latin) - noise.latin_web) < 0.04
    # the same person twice in the CRM
    xref = read_truth(root, "person_xref.csv")
    per_person = defaultdict(int)
    for r in xref:
        if r["source"] == "crm":
            per_person[r["person_id"]] += 1
    dup = sum(1 for v in per_person.values() if v > 1) / len(per_person)
    assert 0.01 < dup < noise.crm_duplicate + 0.01
    assert summary.sources["crm"] > 0 and summary.elapsed_seconds > 0


def test_noise_rates_follow_settings(tmp_path: Path) -> None:
    noise = NoiseRates(upper_case=0.5, latin_web=0.9, initials=0.0)
    generate(tmp_path, GeneratorConfig(clients=4_000, seed=3, noise=noise, bad_row_rate=0.0))
    assert read_truth(tmp_path, "bad_rows.csv") == []
    upper, latin, fio = [], [], []
    for _s, _b, name, _n, raw in feed_lines(tmp_path):
        if name == "clients.csv":
            upper.append(parse_csv(raw)[1].isupper())
        elif name == "events.jsonl":
            latin.append(json.loads(raw)["person"]["last_name"].isascii())
        elif name == "tickets.csv":
            fio.append(parse_csv(raw)[3])
    assert abs(sum(upper) / len(upper) - 0.5) < 0.04
    assert abs(sum(latin) / len(latin) - 0.9) < 0.04
    assert not any(re.match(r"^\S+ \w\.(\w\.)?$", f) for f in fio)


def test_namesakes_exist(run20k) -> None:
    root, _ = run20k
    names = defaultdict(set)
    person = {
        r["source_record_id"]: r["person_id"]
        for r in read_truth(root, "person_xref.csv")
        if r["source"] == "crm"
    }
    for _s, _b, name, _n, raw in feed_lines(root):
        if name == "clients.csv":
            try:
                row = parse_csv(raw)
            except UnicodeDecodeError:
                continue
            if row[0] in person:
                names[(row[1].lower(), row[2].lower(), row[3].lower())].add(person[row[0]])
    shared = sum(1 for v in names.values() if len(v) > 1)
    assert shared > 200
    assert any(k[0].startswith("иванов") and len(v) > 1 for k, v in names.items())


# ------------------------------------------------ the worked example (tests/fixtures)
def _example_facts() -> tuple[T.Catalog, T.Facts, T.Facts]:
    cat = T.Catalog.from_dir(EXAMPLES / "catalog" / "2024-01-01")
    d = datetime
    maria = T.Facts(
        contracts=[
            T.Contract("CARD-2023-0001", "CARDS", "CARD", d(2023, 3, 10, 14, 20)),
            T.Contract("DEP-2020-0042", "DEPOSIT", "DEPOSIT", d(2020, 7, 1, 10)),
        ],
        ticks=[T.Tick("SMS_OK", True, d(2023, 3, 10, 14, 25))],
        web=[
            T.WebConsent(
                "ads_email",
                True,
                "1",
                cat.wording("ads_email", "1").sha256,
                d(2024, 6, 1, 20, 11, 5),
                "email_link",
            ),
            T.WebConsent("ads_sms", False, None, None, d(2024, 6, 2, 8), "sms_code"),
        ],
    )
    viktor = T.Facts(
        contracts=[T.Contract("KR-2024-0007", "LOANS", "LOAN", d(2024, 2, 15, 11))],
        ticks=[T.Tick("CALL_OK", False, d(2024, 2, 15, 11, 5))],
        tickets=[T.Ticket("revoke_consent", "marketing", "all", d(2024, 6, 3, 10, 42))],
        partner=[
            T.PartnerRecord("BETA", "ads_sms", True, d(2024, 1, 20), d(2026, 1, 20), ("call",))
        ],
    )
    return cat, maria, viktor


@pytest.mark.parametrize(
    ("who", "purpose", "channel", "at", "allowed", "status"),
    [
        ("maria", "marketing", "call", "2024-06-10T12:00", True, "granted"),
        ("maria", "marketing", "sms", "2024-06-10T12:00", False, "revoked"),
        ("maria", "marketing", "sms", "2024-05-01T12:00", True, "granted"),
        ("maria", "marketing", "email", "2022-01-01T12:00", True, "granted"),
        ("maria", "marketing", "email", "2024-01-01T12:00", False, "expired"),
        ("maria", "marketing", "call", "2026-06-01T12:00", False, "expired"),
        ("viktor", "marketing", "sms", "2024-03-01T12:00", True, "granted"),
        ("viktor", "marketing", "call", "2024-03-01T12:00", False, "restricted"),
        ("viktor", "marketing", "sms", "2024-06-10T12:00", False, "revoked"),
        ("viktor", "processing", "post", "2024-06-10T12:00", True, "granted"),
    ],
)
def test_worked_example(who, purpose, channel, at, allowed, status) -> None:
    cat, maria, viktor = _example_facts()
    facts = maria if who == "maria" else viktor
    assert T.answer(cat, facts, purpose, channel, datetime.fromisoformat(at)) == (allowed, status)


def test_rule_details() -> None:
    cat, maria, viktor = _example_facts()
    d = datetime
    # a re-exported tick with an old set_at does not re-open after the revocation
    v = T.Facts(
        **{**viktor.__dict__, "ticks": [*viktor.ticks, T.Tick("SMS_OK", True, d(2024, 5, 1, 9))]}
    )
    assert T.answer(cat, v, "marketing", "sms", d(2024, 6, 10, 12)) == (False, "revoked")
    # a later grant re-opens only what it grants
    v.ticks.append(T.Tick("SMS_OK", True, d(2024, 7, 1, 9)))
    assert T.answer(cat, v, "marketing", "sms", d(2024, 7, 2)) == (True, "granted")
    assert T.answer(cat, v, "marketing", "email", d(2024, 7, 2)) == (False, "revoked")
    # a forged hash and a wording not in force are not grants
    w = cat.wording("ads_call", "2")
    f = T.Facts(
        web=[
            T.WebConsent("ads_call", True, "2", "0" * 64, d(2024, 2, 1), "sms_code"),
            T.WebConsent("ads_call", True, "2", w.sha256, d(2023, 2, 1), "sms_code"),
        ]
    )
    assert T.answer(cat, f, "marketing", "call", d(2024, 3, 1)) == (False, "none")
    # an unreadable purpose is honoured as every purpose, on the channels the letter names
    g = T.Facts(
        contracts=maria.contracts,
        tickets=[T.Ticket("revoke_consent", "маркетинг", "call", d(2024, 1, 5))],
    )
    assert T.answer(cat, g, "marketing", "call", d(2024, 2, 1)) == (False, "revoked")
    assert T.answer(cat, g, "processing", "call", d(2024, 2, 1)) == (False, "revoked")
    assert T.answer(cat, g, "processing", "sms", d(2024, 2, 1)) == (True, "granted")
    # the matrix rule must be in force at signing: M3 ended 2022-12-31
    dep = T.Facts(contracts=[T.Contract("DEP-2023-1", "DEPOSIT", "DEPOSIT", d(2023, 2, 1))])
    assert T.answer(cat, dep, "marketing", "email", d(2023, 3, 1)) == (False, "none")
    assert T.add_months(d(2020, 1, 31), 1) == d(2020, 2, 29)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(clients=0)
    with pytest.raises(ValueError):
        GeneratorConfig(clients=10, start=date(2024, 1, 1), end=date(2024, 2, 1))


def test_refuses_to_overwrite_a_foreign_landing_zone(tmp_path: Path) -> None:
    (tmp_path / "crm" / "2024-01-01").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate(tmp_path, GeneratorConfig(clients=10))
    again = tmp_path / "again"
    calls: list[int] = []
    generate(again, GeneratorConfig(clients=25, chunk_size=10), progress=calls.append)
    generate(again, GeneratorConfig(clients=25, chunk_size=10), progress=calls.append)
    assert calls == [10, 20, 25, 10, 20, 25]
