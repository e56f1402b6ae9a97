"""report_conflicts as DPO stories: every conflict type of DESIGN section 8, with its near miss.

One landing zone (the worked example plus small batches: a new catalog snapshot, CRM contracts and
ticks, letters, web events) holds one case of each conflict type and a negative control beside
each; identity is given (client_xref and one ambiguous pair written as splink would), and dbt
builds the consent models once for the module. A second fixture runs the models over generated
feeds with the generator's identity truth and checks the report against what the feeds say; three
hand-made people are added to those feeds, so that no type is compared on an empty set.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from assets.calendar import write_calendar
from pipelines.dbt_cli import run_dbt
from sources.generator import GeneratorConfig, generate
from sources.generator import truth as T
from sources.generator.writers import HEADERS
from tests.conftest import (
    EXAMPLE_XREF,
    EXAMPLES,
    STORY_CLOCK,
    clock,
    fresh_database,
    load_and_stage,
)

MSK = timezone(timedelta(hours=3))
CONTRACT_HEADER = ",".join(HEADERS[("crm", "contracts.csv")])
FLAG_HEADER = ",".join(HEADERS[("crm", "consent_flags.csv")])
CLIENT_HEADER = ",".join(HEADERS[("crm", "clients.csv")])
TICKET_HEADER = ",".join(HEADERS[("helpdesk", "tickets.csv")])
WORDING = {  # the worked example's catalog texts
    ("ads_email", "1"): "Согласен получать рекламные письма.",
    ("ads_sms", "1"): "Согласен получать рекламные SMS.",
}

# who is who beyond the worked example (identity is given: these tests are about the report)
XREF = [
    *EXAMPLE_XREF,
    ("crm", "K-100", "C-IVANOV"),
    ("helpdesk", "HD-100", "C-IVANOV"),
    ("helpdesk", "HD-101", "C-IVANOV"),
    ("crm", "K-110", "C-PETROV"),
    ("helpdesk", "HD-110", "C-PETROV"),
    ("crm", "K-200", "C-SIDOROV"),
    ("web", "ACC-300", "C-WEB300"),
    ("web", "ACC-400", "C-WEB400"),
    ("web", "ACC-410", "C-WEB410"),
    ("crm", "K-410", "C-WEB410"),
    ("crm", "K-500", "C-KOZLOV"),
    ("crm", "K-510", "C-LEBEDEV"),
    ("crm", "K-600", "C-600A"),
    ("helpdesk", "HD-600", "C-600B"),
]


def _batch(landing: Path, source: str, batch_id: str, files: dict[str, str]) -> None:
    folder = landing / source / batch_id
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "_SUCCESS").touch()


def _web_event(
    event_id: str,
    account: str,
    at: str,
    code: str,
    confirmation: str,
    text: str | None = None,
) -> str:
    """One web consent_given event; `text` is what the form showed (default: the catalog's)."""
    shown = text or WORDING[(code, "1")]
    return json.dumps(
        {
            "event_id": event_id,
            "occurred_at": at,
            "event_type": "consent_given",
            "account_id": account,
            "person": {
                "last_name": "Web",
                "first_name": account,
                "middle_name": None,
                "birth_date": None,
                "phone": None,
                "email": None,
            },
            "consents": [
                {
                    "consent_code": code,
                    "granted": True,
                    "wording_version": "1",
                    "wording_sha256": hashlib.sha256(shown.encode()).hexdigest(),
                }
            ],
            "form_id": "promo-landing",
            "confirmation": confirmation,
            "ip": None,
            "evidence_url": f"https://logs.example.ru/{event_id}",
        },
        ensure_ascii=False,
    )


def _story_landing(landing: Path) -> None:
    shutil.copytree(EXAMPLES, landing)
    # the lawyers add life insurance to the matrix: ads_call with wording v2 (in force from
    # 2024-01-01), so a policy signed in 2023 cannot carry it
    catalog = landing / "catalog" / "2024-07-01"
    shutil.copytree(landing / "catalog" / "2024-01-01", catalog)
    with open(catalog / "product_matrix.csv", "a", encoding="utf-8") as handle:
        handle.write("M5,product_type,INSURANCE_LIFE,pd_basic,1,120,2015-01-01,\n")
        handle.write("M6,product_type,INSURANCE_LIFE,ads_call,2,36,2015-01-01,\n")
    contracts = [
        # C-SIDOROV: a 2023 policy (ads_call v2 not yet in force), a 2024 policy (fine), a 2023
        # policy whose call consent was signed on the contract itself (a scanned CRM tick), a
        # product the matrix does not know, and a deposit signed after the deposit rule ended
        "D-200,K-200,INS-2023-0200,INSURANCE,INSURANCE_LIFE,Жизнь,2023-06-01T10:00:00,,MSK1,"
        "https://scans.example.ru/INS-2023-0200.pdf",
        "D-201,K-200,INS-2024-0201,INSURANCE,INSURANCE_LIFE,Жизнь,2024-03-01T10:00:00,,MSK1,"
        "https://scans.example.ru/INS-2024-0201.pdf",
        "D-202,K-200,INS-2023-0202,INSURANCE,INSURANCE_LIFE,Жизнь,2023-07-01T10:00:00,,MSK1,"
        "https://scans.example.ru/INS-2023-0202.pdf",
        "D-203,K-200,GAD-2024-0203,GADGETS,PHONE,Смартфон,2024-02-01T10:00:00,,MSK1,",
        "D-204,K-200,DEP-2023-0204,DEPOSIT,DEPOSIT,Вклад,2023-05-01T10:00:00,,MSK1,",
        # C-KOZLOV's card: its scan is also attached to a tick of another client (C-LEBEDEV)
        "D-500,K-500,CARD-2024-0500,CARDS,CARD,Кредитная карта,2024-05-01T10:00:00,,MSK1,"
        "https://scans.example.ru/CARD-2024-0500.pdf",
    ]
    flags = [
        # C-IVANOV: SMS and calls ticked in January; a letter stops SMS in March (the CRM still
        # ticks SMS_OK); a letter stops e-mail in February and he ticks e-mail again in April
        "K-100,,SMS_OK,true,2024-01-10T10:00:00,operator01,",
        "K-100,,CALL_OK,true,2024-01-10T10:00:00,operator01,",
        "K-100,,MAIL_OK,true,2024-04-01T10:00:00,operator01,",
        # C-PETROV: the CRM recorded his refusal after the letter: nothing left to correct
        "K-110,,SMS_OK,true,2024-01-10T10:00:00,operator02,",
        "K-110,,SMS_OK,false,2024-03-05T10:00:00,operator02,",
        "K-200,D-202,CALL_OK,true,2023-07-01T10:05:00,operator03,"
        "https://scans.example.ru/INS-2023-0202.pdf",
        "K-410,,MAIL_OK,true,2024-09-05T10:00:00,operator04,",
        "K-510,,SMS_OK,true,2024-05-02T10:00:00,operator05,"
        "https://scans.example.ru/CARD-2024-0500.pdf",
    ]
    _batch(
        landing,
        "crm",
        "2024-09-01",
        {
            "clients.csv": CLIENT_HEADER + "\n",
            "contracts.csv": "\n".join([CONTRACT_HEADER, *contracts]) + "\n",
            "consent_flags.csv": "\n".join([FLAG_HEADER, *flags]) + "\n",
        },
    )
    tickets = [
        "HD-100,2024-03-01T12:00:00,revoke_consent,Иванов И.,,,,,,marketing,sms,"
        "https://scans.example.ru/letters/HD-100.pdf,",
        "HD-101,2024-02-01T12:00:00,revoke_consent,Иванов И.,,,,,,marketing,email,,",
        "HD-110,2024-03-01T12:00:00,revoke_consent,Петров П.,,,,,,marketing,sms,,",
        "HD-600,2024-03-01T12:00:00,complaint,Смирнов С.,,,,,,,,,",
    ]
    _batch(
        landing,
        "helpdesk",
        "2024-09-03",
        {"tickets.csv": "\n".join([TICKET_HEADER, *tickets]) + "\n"},
    )
    events = [
        # a landing page that showed a different text than the catalog's v1
        _web_event("EV-300", "ACC-300", "2024-09-01T10:00:00", "ads_email", "email_link", "Да."),
        _web_event("EV-301", "ACC-300", "2024-09-01T10:01:00", "ads_sms", "sms_code"),
        # an unconfirmed form: the only basis of C-WEB400's e-mail consent, but not C-WEB410's
        _web_event("EV-400", "ACC-400", "2024-09-01T11:00:00", "ads_email", "none"),
        _web_event("EV-410", "ACC-410", "2024-09-01T11:00:00", "ads_email", "none"),
    ]
    _batch(landing, "web", "2024-09-02", {"events.jsonl": "\n".join(events) + "\n"})


def _build(
    url: str,
    landing: Path,
    xref: list[tuple[str, str, str]] | Path,
    as_of: datetime | None = None,
) -> None:
    """Load, stage and derive; the marts at `as_of` (default: the session's clock)."""
    load_and_stage(url, landing)
    with psycopg.connect(url, autocommit=True) as conn:
        write_calendar(conn, 2030)
        with conn.cursor() as cur:
            if isinstance(xref, Path):
                with cur.copy(
                    "copy consent.client_xref (source, source_record_id, client_id) "
                    "from stdin (format csv, header true)"
                ) as copy:
                    copy.write(xref.read_bytes())
            else:
                cur.executemany(
                    "insert into consent.client_xref (source, source_record_id, client_id) "
                    "values (%s, %s, %s)",
                    xref,
                )
    run_dbt(url, "build", "--select", "intermediate", "marts", as_of=as_of)


@pytest.fixture(scope="module")
def report(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("conflicts") / "landing"
    _story_landing(landing)
    with fresh_database(server_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            from sources.schema import ensure_schema

            ensure_schema(conn)
            # splink scored K-600 and HD-600 between the review thresholds and kept them apart
            conn.execute(
                "insert into consent.identity_ambiguous_matches values "
                "('crm', 'K-600', 'C-600A', 'helpdesk', 'HD-600', 'C-600B', 0.72, false)"
            )
        # the story's consents are of 2024 (web forms run 36 months): at a fixed instant
        _build(url, landing, XREF, as_of=STORY_CLOCK)
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


def _rows(conn: psycopg.Connection, conflict_type: str) -> list[tuple]:
    return conn.execute(
        "select client_id, source_records, event_ids, detail, occurred_at "
        "from consent.report_conflicts where conflict_type = %s order by client_id, detail",
        (conflict_type,),
    ).fetchall()


def test_each_row_names_its_type_client_and_records_with_a_stable_id(report):
    rows = report.execute(
        "select conflict_id, conflict_type, client_id, source_records from consent.report_conflicts"
    ).fetchall()
    assert {r[1] for r in rows} == {
        "tick_after_revocation",
        "contract_missing_consents",
        "wording_mismatch",
        "unconfirmed_sole_basis",
        "shared_document",
        "ambiguous_identity",
    }
    assert len({r[0] for r in rows}) == len(rows)
    assert all(r[2] and r[3] for r in rows)
    # nobody who is only a negative control is reported
    assert {r[2] for r in rows}.isdisjoint({"C-PETROV", "C-WEB410"})


def test_the_crm_still_ticking_sms_after_the_clients_letter_is_a_tick_after_revocation(report):
    rows = {r[0]: r for r in _rows(report, "tick_after_revocation")}
    assert set(rows) == {"C-IVANOV", "C-MARIA", "C-VIKTOR"}
    # K-100's SMS_OK (January) vs letter HD-100 (March): both records named; his CALL_OK is not
    # in the letter's scope, and his MAIL_OK was ticked after the e-mail letter (a new consent)
    _, records, event_ids, detail, occurred_at = rows["C-IVANOV"]
    assert records == ["crm:K-100", "helpdesk:HD-100"]
    assert event_ids[0].startswith("crm:tick:")
    assert event_ids[1:] == ["helpdesk:HD-100:marketing:sms"]
    assert "ads_sms" in detail and "CALL_OK" not in detail
    assert occurred_at == datetime(2024, 3, 1, 12, 0, tzinfo=MSK)
    # the worked example: Maria's CRM tick after her web withdrawal EV-2, and the partner feed
    # still granting Viktor SMS after his letter HD-10 (C-PETROV's CRM recorded his refusal)
    assert rows["C-MARIA"][1] == ["crm:K-1", "web:ACC-501"]
    assert rows["C-MARIA"][2][1:] == ["web:EV-2#0"]
    assert rows["C-VIKTOR"][1] == ["partner:BETA:B-77", "helpdesk:HD-10"]


def test_a_policy_signed_before_the_wording_its_product_requires_misses_that_consent(report):
    rows = _rows(report, "contract_missing_consents")
    assert {r[0] for r in rows} == {"C-SIDOROV"}
    details = sorted(r[3] for r in rows)
    # INS-2023-0200: rule M6 names ads_call v2, not in force in 2023; INS-2024-0201 is signed
    # after it, and INS-2023-0202 carries a signed CRM tick for calls on the contract itself
    assert len(details) == 3
    missing = next(d for d in details if "INS-2023-0200" in d)
    assert "ads_call" in missing and "wording_not_in_force" in missing
    assert not any("INS-2024-0201" in d or "INS-2023-0202" in d for d in details)
    # a product the matrix does not know, and a deposit signed after the deposit rule ended
    assert any("GAD-2024-0203" in d and "has no rule for this product" in d for d in details)
    assert any("DEP-2023-0204" in d and "in force at signing" in d for d in details)
    by_number = {r[3].split()[1].rstrip(":"): r for r in rows}
    assert by_number["INS-2023-0200"][1] == ["crm:K-200"]
    assert by_number["INS-2023-0200"][2] == ["crm:contract:D-200:M6"]
    assert by_number["INS-2023-0200"][4] == datetime(2023, 6, 1, 10, 0, tzinfo=MSK)


def test_a_web_grant_whose_text_hash_differs_from_the_catalog_is_a_wording_mismatch(report):
    rows = _rows(report, "wording_mismatch")
    # EV-300's form showed another text; EV-301 (same account) cited the catalog's exactly
    assert [(r[0], r[1], r[2]) for r in rows] == [("C-WEB300", ["web:ACC-300"], ["web:EV-300#0"])]
    assert "wording_hash_mismatch" in rows[0][3]


def test_an_unconfirmed_web_form_as_the_only_basis_of_a_consent_is_reported(report):
    rows = _rows(report, "unconfirmed_sole_basis")
    # C-WEB410 filled in the same unconfirmed form but also has a CRM tick for e-mail; Maria's
    # web consent was confirmed by an e-mail link
    assert [(r[0], r[1], r[2]) for r in rows] == [("C-WEB400", ["web:ACC-400"], ["web:EV-400#0"])]
    assert "marketing on email" in rows[0][3]
    assert rows[0][4] == datetime(2024, 9, 1, 11, 0, tzinfo=MSK)


def test_one_scan_attached_to_two_clients_is_reported_for_each_of_them(report):
    rows = _rows(report, "shared_document")
    # Maria's contract scan is also on her own tick: one client, no conflict
    assert [(r[0], r[1]) for r in rows] == [
        ("C-KOZLOV", ["crm:K-500", "crm:K-510"]),
        ("C-LEBEDEV", ["crm:K-510", "crm:K-500"]),
    ]
    assert all("CARD-2024-0500.pdf" in r[3] and "2 different clients" in r[3] for r in rows)


def test_a_pair_splink_could_not_decide_is_an_ambiguous_identity(report):
    rows = _rows(report, "ambiguous_identity")
    assert [(r[0], r[1]) for r in rows] == [("C-600A", ["crm:K-600", "helpdesk:HD-600"])]
    assert "0.72" in rows[0][3] and "C-600B" in rows[0][3]


# ------------------------------------------------------------------ generated feeds vs truth
def _feed_rows(landing: Path):
    """(source, file, record) of every row ingestion loads (truth's ingest-bad rows skipped)."""
    with open(landing / "truth" / "bad_rows.csv", encoding="utf-8", newline="") as handle:
        bad = {
            (r["source"], r["batch_id"], r["file_name"], int(r["line_number"]))
            for r in csv.DictReader(handle)
            if r["stage"] == "ingest"
        }
    for (source, name), header in HEADERS.items():
        for path in sorted((landing / source).glob(f"*/{name}")):
            lines = path.read_bytes().split(b"\n")[:-1]
            first = 1 if header else 0
            for number, raw in enumerate(lines[first:], start=first + 1):
                if (source, path.parent.name, name, number) in bad:
                    continue
                text = raw.decode("utf-8")
                if not header:
                    yield source, name, json.loads(text)
                else:
                    row = next(csv.reader(io.StringIO(text)))
                    yield source, name, dict(zip(header, row, strict=True))


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MSK)


def _covers(revoked: tuple[str, str, str], granted: tuple[str, str, str]) -> bool:
    (rp, rc, rpc), (gp, gc, gpc) = revoked, granted
    return rp == gp and (rc == gc or "any" in (rc, gc)) and rpc in ("", gpc)


def _expected_from_feeds(landing: Path):
    """Each conflict type recomputed from the feeds, the catalog and the truth's identity."""
    cat = T.Catalog.from_dir(sorted((landing / "catalog").iterdir())[-1])
    with open(landing / "truth" / "person_xref.csv", encoding="utf-8", newline="") as handle:
        person = {
            (r["source"], r["source_record_id"]): r["person_id"] for r in csv.DictReader(handle)
        }

    def scope(code: str) -> tuple[str, str, str] | None:
        t = cat.types.get(code)
        return (t.purpose, t.channel, t.partner_code) if t else None

    states = defaultdict(list)  # (person, record, contract, code) -> [(at, is_revoke)]
    revocations = defaultdict(list)  # person -> [(scope, at, record)]
    documents = defaultdict(set)  # url -> persons
    facts = defaultdict(T.Facts)
    erased = set()
    contracts = {}
    for _, name, r in _feed_rows(landing):
        if name == "events.jsonl":
            record, at = f"web:{r['account_id']}", _at(r["occurred_at"])
            who = person.get(("web", r["account_id"]))
            documents[r["evidence_url"]].add(who)
            for c in r["consents"]:
                facts[who].web.append(
                    T.WebConsent(
                        c["consent_code"],
                        c["granted"],
                        c["wording_version"],
                        c["wording_sha256"],
                        at.replace(tzinfo=None),
                        r["confirmation"],
                    )
                )
                if scope(c["consent_code"]):
                    states[(who, record, "", c["consent_code"])].append((at, not c["granted"]))
                if not c["granted"]:
                    s = scope(c["consent_code"]) or ("marketing", "any", "")
                    revocations[who].append((s, at, record))
        elif name == "contracts.csv":
            who = person.get(("crm", r["crm_client_id"]))
            contracts[r["contract_id"]] = (who, r)
            documents[r["scan_url"]].add(who)
            facts[who].contracts.append(
                T.Contract(
                    r["contract_number"],
                    r["system_code"],
                    r["product_type"],
                    datetime.fromisoformat(r["signed_at"]),
                )
            )
        elif name == "consent_flags.csv":
            who, record = person.get(("crm", r["crm_client_id"])), f"crm:{r['crm_client_id']}"
            documents[r["scan_url"]].add(who)
            at, value = _at(r["set_at"]), r["value"] == "true"
            facts[who].ticks.append(T.Tick(r["flag_code"], value, at.replace(tzinfo=None)))
            code = cat.flag_map.get(r["flag_code"])
            if code and scope(code):
                states[(who, record, r["contract_id"], code)].append((at, not value))
                if not value:
                    revocations[who].append((scope(code), at, record))
        elif name == "tickets.csv":
            who, record = person.get(("helpdesk", r["ticket_id"])), f"helpdesk:{r['ticket_id']}"
            documents[r["letter_scan_url"]].add(who)
            at, kind = _at(r["received_at"]), r["request_type"]
            facts[who].tickets.append(
                T.Ticket(kind, r["scope_purposes"], r["scope_channels"], at.replace(tzinfo=None))
            )
            if kind == "erase_data":
                erased.add(who)
                pairs = {(p, "any") for p in T.PURPOSES}
            elif kind in ("revoke_consent", "restrict_processing"):
                # each axis on its own: an unreadable one is all (the truth's reading)
                read = T._scope(r["scope_purposes"], r["scope_channels"])
                every = len({c for _, c in read}) == len(T.CHANNELS)
                pairs = {(p, "any" if every else c) for p, c in read}
            else:
                continue
            revocations[who].extend(((p, c, ""), at, record) for p, c in pairs)
        elif name == "partner_clients.csv":
            key = f"{r['partner_code']}:{r['partner_client_id']}"
            who, record = person.get(("partner", key)), f"partner:{key}"
            documents[r["evidence_url"]].add(who)
            at, granted = _at(r["obtained_at"]), r["granted"] == "true"
            rc = r["restricted_channels"]
            facts[who].partner.append(
                T.PartnerRecord(
                    r["partner_code"],
                    r["consent_code"],
                    granted,
                    at.replace(tzinfo=None),
                    datetime.fromisoformat(r["valid_until"]) if r["valid_until"] else None,
                    tuple(rc.split(";")) if rc else (),
                )
            )
            if scope(r["consent_code"]):
                states[(who, record, "", r["consent_code"])].append((at, not granted))
                if not granted:
                    revocations[who].append((scope(r["consent_code"]), at, record))

    ticks = set()
    for (who, record, _, code), facts_of_key in states.items():
        at, is_revoke = max(facts_of_key)  # the newest; a revocation wins a tie
        if who is None or is_revoke:
            continue
        by = {rec for s, rat, rec in revocations[who] if rat >= at and _covers(s, scope(code))}
        if by:
            ticks.add((who, record, code, at, frozenset(by)))

    missing = set()
    for who, r in contracts.values():
        signed, got = datetime.fromisoformat(r["signed_at"]), set()
        rules = [
            rule
            for rule in cat.rules
            if rule.in_force(signed.date())
            and rule.matches(r["contract_number"], r["system_code"], r["product_type"])
        ]
        for rule in rules:
            w = (
                cat.wording(rule.code, rule.version)
                if rule.version
                else cat.wording_in_force(rule.code, signed.date())
            )
            if rule.code in cat.types and w is not None and w.in_force(signed.date()):
                got.add(rule.code)
        if not rules or {rule.code for rule in rules} - got:
            missing.add((who, r["contract_number"]))

    # the instant the generated feeds were derived at (_build: the session's clock)
    now = clock().astimezone(MSK).replace(tzinfo=None)
    unconfirmed = set()
    for who, f in facts.items():
        if who is None or who in erased:
            continue
        derived = T.derive(cat, f)
        for purpose in ("processing", "marketing"):
            for channel in T.CHANNELS:
                if T.status(derived, purpose, channel, now) == T.GRANTED and (
                    T.status(derived, purpose, channel, now, count_unconfirmed=False) != T.GRANTED
                ):
                    unconfirmed.add((who, purpose, channel))
    shared = {
        (url, who)
        for url, persons in documents.items()
        if url and len(persons - {None}) > 1
        for who in persons - {None}
    }
    return ticks, missing, unconfirmed, shared, erased


# The generator never writes a contract its matrix does not cover, nor a document attached to
# two people, so that the comparison below cannot pass on empty sets the feeds get three
# hand-made people on top: Gromov signs for a gadget the matrix has no rule for; Frolova opened
# a deposit in 2014, before any rule of the matrix was in force; Yakovleva's complaint letter
# was filed with a scan of Gromov's gadget contract. Their identity is added to the truth.
EXTRA_SCAN = "https://scans.example.ru/extra/GAD-2024-9001.pdf"
EXTRA_XREF = [
    ("crm", "K-EXTRA-1", "P-EXTRA-GROMOV"),
    ("crm", "K-EXTRA-2", "P-EXTRA-FROLOVA"),
    ("helpdesk", "HD-EXTRA-3", "P-EXTRA-YAKOVLEVA"),
]
EXTRA_MISSING = {
    ("P-EXTRA-GROMOV", "GAD-2024-9001"): "the product matrix has no rule for this product",
    ("P-EXTRA-FROLOVA", "DEP-2014-9002"): "no rule of the product matrix for this product "
    "was in force at signing",
}
EXTRA_SHARED = {(EXTRA_SCAN, "P-EXTRA-GROMOV"), (EXTRA_SCAN, "P-EXTRA-YAKOVLEVA")}


def _add_hand_made_rows(landing: Path) -> None:
    _batch(
        landing,
        "crm",
        "2025-02-01",
        {
            "clients.csv": "\n".join(
                [
                    CLIENT_HEADER,
                    "K-EXTRA-1,Громов,Глеб,,1979-03-04,,,,,2024-11-01T10:00:00",
                    "K-EXTRA-2,Фролова,Фаина,,1950-05-06,,,,,2024-11-01T10:00:00",
                ]
            )
            + "\n",
            "contracts.csv": "\n".join(
                [
                    CONTRACT_HEADER,
                    f"D-EXTRA-1,K-EXTRA-1,GAD-2024-9001,GADGETS,DRONE,Квадрокоптер,"
                    f"2024-11-01T10:00:00,,MSK1,{EXTRA_SCAN}",
                    "D-EXTRA-2,K-EXTRA-2,DEP-2014-9002,DEPOSIT,DEPOSIT,Вклад,"
                    "2014-06-02T10:00:00,,MSK1,https://scans.example.ru/extra/DEP-2014-9002.pdf",
                ]
            )
            + "\n",
            "consent_flags.csv": FLAG_HEADER + "\n",
        },
    )
    _batch(
        landing,
        "helpdesk",
        "2025-02-01",
        {
            "tickets.csv": "\n".join(
                [
                    TICKET_HEADER,
                    f"HD-EXTRA-3,2024-12-02T10:00:00,complaint,Яковлева Я.,,,,,,,,{EXTRA_SCAN},",
                ]
            )
            + "\n"
        },
    )
    with open(landing / "truth" / "person_xref.csv", "a", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(EXTRA_XREF)


@pytest.fixture(scope="module")
def generated(server_url, tmp_path_factory):
    landing = tmp_path_factory.mktemp("conflicts-generated") / "landing"
    # more deliberately bad rows than usual, so that each wording problem occurs several times
    generate(landing, GeneratorConfig(clients=800, seed=17, bad_row_rate=0.03))
    _add_hand_made_rows(landing)
    with fresh_database(server_url) as url:
        _build(url, landing, landing / "truth" / "person_xref.csv")
        with psycopg.connect(url, autocommit=True) as conn:
            yield landing, conn


def test_on_generated_feeds_every_conflict_is_the_one_the_feeds_and_truth_imply(generated):
    landing, conn = generated
    ticks, missing, unconfirmed, shared, erased = _expected_from_feeds(landing)
    counts = dict(
        conn.execute(
            "select conflict_type, count(*) from consent.report_conflicts group by 1"
        ).fetchall()
    )

    # every bad row the generator wrote with a wrong or out-of-force wording, and nothing else
    with open(landing / "truth" / "bad_rows.csv", encoding="utf-8", newline="") as handle:
        wording_rows = {
            f"web:{r['record_id']}#0"
            for r in csv.DictReader(handle)
            if r["stage"] == "validate"
            and r["rule"] in ("wording_hash_mismatch", "wording_not_in_force")
        }
    reported = {
        r[0]
        for r in conn.execute(
            "select event_ids[1] from consent.report_conflicts "
            "where conflict_type = 'wording_mismatch'"
        )
    }
    assert len(wording_rows) >= 5
    assert reported == wording_rows

    # sources still showing a consent after a revocation of the same person that covers it
    # (the generator re-exports old CRM ticks after letters; partner and web grants stay too)
    rows = conn.execute(
        """
        select r.client_id, r.source_records[1], e.consent_code, e.effective_at,
               r.source_records[2:]
        from consent.report_conflicts r
        join consent.consent_event e on e.event_id = r.event_ids[1]
        where r.conflict_type = 'tick_after_revocation'
        """
    ).fetchall()
    found = {(who, record, code, at, frozenset(by)) for who, record, code, at, by in rows}
    # the tick's own record is named once, first (a client-level refusal may revoke a contract tick)
    expected = {(w, rec, c, at, frozenset(by - {rec})) for w, rec, c, at, by in ticks}
    assert len(expected) >= 5
    assert found == expected

    # contracts lacking a required consent: the generated matrix covers every generated
    # product, so exactly Gromov's gadget and Frolova's 2014 deposit
    assert missing == set(EXTRA_MISSING)
    rows = conn.execute(
        "select client_id, detail from consent.report_conflicts "
        "where conflict_type = 'contract_missing_consents'"
    ).fetchall()
    assert {(who, detail.split()[1].rstrip(":")) for who, detail in rows} == missing
    for who, detail in rows:
        assert EXTRA_MISSING[(who, detail.split()[1])] in detail

    # consents whose only basis now is an unconfirmed web form (truth.status with and without
    # unconfirmed web consents; erase requests, which the truth ignores, left out)
    rows = conn.execute(
        """
        select g.client_id, g.purpose, g.channel
        from consent.report_conflicts r
        join consent.golden_consent g
            on g.client_id = r.client_id and g.basis_event_ids = r.event_ids
            and g.status = 'granted'
        where r.conflict_type = 'unconfirmed_sole_basis'
        """
    ).fetchall()
    assert len(unconfirmed) >= 10
    assert {r for r in rows if r[0] not in erased} == unconfirmed

    # the generator attaches every scan, letter, partner evidence and form log to one person:
    # the only shared document is Gromov's contract scan on Yakovleva's complaint
    assert shared == EXTRA_SHARED
    rows = conn.execute(
        "select split_part(detail, ' ', 2), client_id from consent.report_conflicts "
        "where conflict_type = 'shared_document'"
    ).fetchall()
    assert len(rows) == len(shared)
    assert set(rows) == shared
    # identity came from the truth: no ambiguous pairs
    assert counts.get("ambiguous_identity", 0) == 0
