"""Deliberately bad rows, one kind each, so that ingestion and validation have work.

Every bad row is an extra row of a real person (who is then left out of the
expected-status sample) and is listed in truth/bad_rows.csv with its physical line.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import TYPE_CHECKING

from . import catalog as cat_mod
from . import truth
from .people import _perm

if TYPE_CHECKING:
    from .histories import ChunkWriter, Person


def _csv_line(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return buf.getvalue()


def _crm_id(idx: int, crm_ids: list[tuple[str, float]]) -> str:
    return crm_ids[0][0] if crm_ids else f"K-{_perm(idx * 4 + 2, 7_777, 10**10):010d}"


def _contract_row(cw: ChunkWriter, idx: int, crm_id: str, t: datetime) -> list[str]:
    prod = cw.rnd.choice(cat_mod.PRODUCTS)
    number = f"{prod.prefix}-{t.year}-{_perm(idx * 16 + 15, 31_337):09d}"
    return [
        f"D-{_perm(idx * 16 + 15, 55_555, 10**10):010d}",
        crm_id,
        number,
        prod.system_code,
        prod.product_type,
        prod.product_name,
        t.isoformat(timespec="seconds"),
        "",
        "MSK1",
        "",
    ]


def _flag_row(cw: ChunkWriter, crm_id: str, t: datetime, flag: str = "SMS_OK") -> list[str]:
    return [crm_id, "", flag, "true", t.isoformat(timespec="seconds"), "operator01", ""]


def write(
    cw: ChunkWriter,
    p: Person,
    i: int,
    idx: int,
    join: float,
    crm_ids: list[tuple[str, float]],
    acc: str | None,
    acc_person: dict | None,
    stage: str,
    rule: str,
) -> None:
    r = cw.rnd
    t_s = cw.between(join)
    t = cw.at(t_s, office=True)
    land = cw.land
    crm_id = _crm_id(idx, crm_ids)
    tid = f"HD-{_perm(idx * 4 + 3, 2_024, 10**10):010d}"
    pcid_k = 1
    y = t.year

    def done(source: str, b: int, name: str, line: int, rid: str, desc: str) -> None:
        cw.bad_row(stage, rule, source, b, name, line, rid, desc)

    def new_acc() -> tuple[str, dict]:
        return (acc or f"ACC-{_perm(idx * 2 + 1, 99_991):09d}", acc_person or cw.web_person(i))

    def web_bad_event(event: dict, line_text: str | None = None) -> tuple[int, int]:
        b = land.batch_of("web", t.date())
        line = land.text(
            "web",
            b,
            "events.jsonl",
            line_text if line_text is not None else json.dumps(event, ensure_ascii=False),
        )
        return b, line

    if rule == "column_count":
        v = r.randrange(5)
        if v == 0:
            row, b = cw.client_row(i, f"K-{_perm(idx * 4 + 2, 7_777, 10**10):010d}", t_s)
            src, name = "crm", "clients.csv"
        elif v == 1:
            row, b, src, name = (
                _contract_row(cw, idx, crm_id, t),
                land.batch_of("crm", t.date()),
                "crm",
                "contracts.csv",
            )
        elif v == 2:
            row, b, src, name = (
                _flag_row(cw, crm_id, t),
                land.batch_of("crm", t.date()),
                "crm",
                "consent_flags.csv",
            )
        elif v == 3:
            row, b = cw._ticket_row(i, tid, t, "complaint", "", "", "")
            src, name = "helpdesk", "tickets.csv"
        else:
            pc = r.choice(cat_mod.PARTNERS)
            row, _, b = cw._partner_row(
                i, pc, f"{pc[0]}-{_perm(idx * 2 + 1, 8_080):09d}", "ads_sms", "true", t, ""
            )
            src, name = "partner", "partner_clients.csv"
        rid = f"{row[0]}:{row[1]}" if src == "partner" else row[0]
        n = len(row)
        row = row[:-1] if r.random() < 0.5 else [*row, "лишнее поле"]
        line = land.csv(src, b, name, row)
        done(src, b, name, line, rid, f"{len(row)} fields instead of {n}")
    elif rule == "invalid_json":
        a, person = acc or f"ACC-{_perm(idx * 2 + 1, 99_991):09d}", acc_person or cw.web_person(i)
        eid = cw.event_id(idx)
        ev = cw.web_event(eid, t, "profile_update", a, person, [], "profile", "none")
        text = json.dumps(ev, ensure_ascii=False)
        b, line = web_bad_event(ev, text[: len(text) * 2 // 3])
        done("web", b, "events.jsonl", line, eid, "truncated JSON object")
    elif rule == "invalid_date":
        v = r.randrange(6)
        if v == 0:
            row = _contract_row(cw, idx, crm_id, t)
            row[6] = f"{y}-02-30T10:15:00"
            b = land.batch_of("crm", t.date())
            line = land.csv("crm", b, "contracts.csv", row)
            done("crm", b, "contracts.csv", line, row[0], "signed_at is not a date")
        elif v == 1:
            row, b = cw.client_row(i, f"K-{_perm(idx * 4 + 2, 7_777, 10**10):010d}", t_s)
            row[4] = f"{cw.P.birth[i].year}-13-{cw.P.birth[i].day:02d}"
            line = land.csv("crm", b, "clients.csv", row)
            done("crm", b, "clients.csv", line, row[0], "birth_date month 13")
        elif v == 2:
            row = _flag_row(cw, crm_id, t)
            row[4] = f"{y}-06-31T12:00:00"
            b = land.batch_of("crm", t.date())
            line = land.csv("crm", b, "consent_flags.csv", row)
            done("crm", b, "consent_flags.csv", line, row[0], "set_at June 31")
        elif v == 3:
            row, b = cw._ticket_row(i, tid, t, "complaint", "", "", "")
            row[1] = f"{y}-02-30T11:00:00"
            line = land.csv("helpdesk", b, "tickets.csv", row)
            done("helpdesk", b, "tickets.csv", line, row[0], "received_at February 30")
        elif v == 4:
            pc = r.choice(cat_mod.PARTNERS)
            row, _, b = cw._partner_row(
                i, pc, f"{pc[0]}-{_perm(idx * 2 + 1, 8_080):09d}", "ads_email", "true", t, ""
            )
            row[10] = f"{y}-04-31T00:00:00"
            line = land.csv("partner", b, "partner_clients.csv", row)
            done(
                "partner",
                b,
                "partner_clients.csv",
                line,
                f"{row[0]}:{row[1]}",
                "obtained_at April 31",
            )
        else:
            a, person = new_acc()
            eid = cw.event_id(idx)
            ev = cw.web_event(eid, t, "profile_update", a, person, [], "profile", "none")
            ev["occurred_at"] = f"{y}-13-01T10:00:00"
            b, line = web_bad_event(ev)
            done("web", b, "events.jsonl", line, eid, "occurred_at month 13")
    elif rule == "unknown_value":
        v = r.randrange(4)
        if v == 0:
            row = _flag_row(cw, crm_id, t)
            row[3] = r.choice(("да", "maybe"))
            b = land.batch_of("crm", t.date())
            line = land.csv("crm", b, "consent_flags.csv", row)
            done("crm", b, "consent_flags.csv", line, row[0], "value is not true/false")
        elif v == 1:
            row, b = cw._ticket_row(
                i, tid, t, r.choice(("unsubscribe", "отзыв")), "", "marketing", "all"
            )
            line = land.csv("helpdesk", b, "tickets.csv", row)
            done("helpdesk", b, "tickets.csv", line, row[0], "unknown request_type")
        elif v == 2:
            pc = r.choice(cat_mod.PARTNERS)
            row, _, b = cw._partner_row(
                i,
                pc,
                f"{pc[0]}-{_perm(idx * 2 + 1, 8_080):09d}",
                "ads_sms",
                r.choice(("да", "maybe")),
                t,
                "",
            )
            line = land.csv("partner", b, "partner_clients.csv", row)
            done(
                "partner",
                b,
                "partner_clients.csv",
                line,
                f"{row[0]}:{row[1]}",
                "granted is not true/false",
            )
        else:
            a, person = new_acc()
            eid = cw.event_id(idx)
            ev = cw.web_event(eid, t, "profile_update", a, person, [], "profile", "none")
            if r.random() < 0.5:
                ev["event_type"] = "consent_updated"
                desc = "unknown event_type"
            else:
                ev["confirmation"] = "fax"
                desc = "unknown confirmation"
            b, line = web_bad_event(ev)
            done("web", b, "events.jsonl", line, eid, desc)
    elif rule == "missing_required":
        v = r.randrange(4)
        if v == 0:
            row, b = cw.client_row(i, "", t_s)
            line = land.csv("crm", b, "clients.csv", row)
            done("crm", b, "clients.csv", line, "", "empty crm_client_id")
        elif v == 1:
            row, b = cw._ticket_row(i, "", t, "complaint", "", "", "")
            line = land.csv("helpdesk", b, "tickets.csv", row)
            done("helpdesk", b, "tickets.csv", line, "", "empty ticket_id")
        elif v == 2:
            pc = r.choice(cat_mod.PARTNERS)
            row, _, b = cw._partner_row(i, pc, "", "ads_sms", "true", t, "")
            line = land.csv("partner", b, "partner_clients.csv", row)
            done("partner", b, "partner_clients.csv", line, "", "empty partner_client_id")
        else:
            _, person = new_acc()
            eid = cw.event_id(idx)
            ev = cw.web_event(eid, t, "profile_update", None, person, [], "profile", "none")
            b, line = web_bad_event(ev)
            done("web", b, "events.jsonl", line, "", "account_id is null")
    elif rule == "invalid_encoding":
        if r.random() < 0.5:
            row, b = cw.client_row(i, f"K-{_perm(idx * 4 + 2, 7_777, 10**10):010d}", t_s)
            row[8] = cw.P.address[i]
            src, name, rid = "crm", "clients.csv", row[0]
        else:
            row, b = cw._ticket_row(i, tid, t, "complaint", "", "", "")
            src, name, rid = "helpdesk", "tickets.csv", row[0]
        data = _csv_line(row).encode("cp1251", errors="replace")
        try:
            data.decode("utf-8")
            data += ",\xc0\xff".encode("latin-1")  # pragma: no cover - never valid in practice
        except UnicodeDecodeError:
            pass
        line = land.raw(src, b, name, data)
        done(src, b, name, line, rid, "line encoded in Windows-1251")
    elif rule in ("wording_hash_mismatch", "wording_not_in_force"):
        a, person = new_acc()
        eid = cw.event_id(idx)
        if rule == "wording_hash_mismatch":
            code = r.choice(cat_mod.MARKETING_CODES)
            c = cw.consent(code, t)
            c["wording_sha256"] = cat_mod.sha256("Согласен на всё.")
            desc = f"{code} wording hash does not match the catalog text"
        else:
            code = r.choice(("ads_call", "ads_sms"))
            if t < cw.change:
                ver, text = "2", cat_mod.TEXTS_V2[code]
                desc = f"{code} v2 cited before it came into force"
            else:
                ver, text = "1", cat_mod.TEXTS_V1[code]
                desc = f"{code} v1 cited after it went out of force"
            c = {
                "consent_code": code,
                "granted": True,
                "wording_version": ver,
                "wording_sha256": cat_mod.sha256(text),
            }
        ev = cw.web_event(eid, t, "consent_given", a, person, [c], "promo-landing", "sms_code")
        b, line = web_bad_event(ev)
        if a != acc:
            cw.add_xref(p, "web", a)
        p.facts.web.append(
            truth.WebConsent(code, True, c["wording_version"], c["wording_sha256"], t, "sms_code")
        )
        done("web", b, "events.jsonl", line, eid, desc)
    elif rule == "garbled_scope":
        sp, sc = r.choice(cw_garbled())
        row, b = cw._ticket_row(i, tid, t, "revoke_consent", "", sp, sc)
        line = land.csv("helpdesk", b, "tickets.csv", row)
        cw.add_xref(p, "helpdesk", tid)
        p.facts.tickets.append(truth.Ticket("revoke_consent", sp, sc, t))
        done("helpdesk", b, "tickets.csv", line, tid, "scope has unknown codes")
    elif rule == "unknown_consent_code":
        v = r.randrange(3)
        if v == 0 or (v == 2 and not crm_ids):
            a, person = new_acc()
            eid = cw.event_id(idx)
            c = {
                "consent_code": "ads_fax",
                "granted": True,
                "wording_version": "1",
                "wording_sha256": cat_mod.sha256("Согласен на рекламу по факсу."),
            }
            ev = cw.web_event(eid, t, "consent_given", a, person, [c], "promo-landing", "sms_code")
            b, line = web_bad_event(ev)
            if a != acc:
                cw.add_xref(p, "web", a)
            p.facts.web.append(
                truth.WebConsent("ads_fax", True, "1", c["wording_sha256"], t, "sms_code")
            )
            done("web", b, "events.jsonl", line, eid, "consent_code ads_fax is not in the catalog")
        elif v == 1:
            pc = r.choice(cat_mod.PARTNERS)
            pcid = f"{pc[0]}-{_perm(idx * 2 + pcid_k, 8_080):09d}"
            row, until, b = cw._partner_row(i, pc, pcid, "ads_pigeon", "true", t, "")
            line = land.csv("partner", b, "partner_clients.csv", row)
            cw.add_xref(p, "partner", f"{pc}:{pcid}")
            p.facts.partner.append(truth.PartnerRecord(pc, "ads_pigeon", True, t, until, ()))
            done(
                "partner",
                b,
                "partner_clients.csv",
                line,
                f"{pc}:{pcid}",
                "consent_code ads_pigeon is not in the catalog",
            )
        else:
            row = _flag_row(cw, crm_id, t, "FAX_OK")
            b = land.batch_of("crm", t.date())
            line = land.csv("crm", b, "consent_flags.csv", row)
            p.facts.ticks.append(truth.Tick("FAX_OK", True, t))
            done(
                "crm",
                b,
                "consent_flags.csv",
                line,
                crm_id,
                "flag_code FAX_OK is not in the CRM flag map",
            )
    else:  # pragma: no cover
        raise ValueError(rule)


def cw_garbled() -> tuple[tuple[str, str], ...]:
    from .histories import _GARBLED

    return _GARBLED
