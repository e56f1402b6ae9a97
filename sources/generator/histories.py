"""Histories of real people over several years, written to the feeds as they happen.

One ``Story`` per person: CRM client(s), contracts, ticks, web account and events,
helpdesk letters, partner records, and - at the configured rate - one deliberately
bad row. Every fact that reaches the feeds is also kept as a ``truth.Facts`` so
that the expected status can be computed independently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate

from . import catalog as cat_mod
from . import noise, truth
from .config import GeneratorConfig
from .people import PeopleChunk, _perm
from .writers import Landing, Table

DAY = 86_400
_PRODUCT_CUM = list(accumulate(p.weight for p in cat_mod.PRODUCTS))
_NPROD_CUM = list(accumulate((0.42, 0.3, 0.16, 0.08, 0.04)))
_CONFIRM = ("none", "email_link", "sms_code", "esia")
_CONFIRM_CUM = list(accumulate((0.25, 0.4, 0.3, 0.05)))
_REQUESTS = ("revoke_consent", "erase_data", "restrict_processing", "access_request", "complaint")
_REQUESTS_CUM = list(accumulate((0.7, 0.07, 0.05, 0.1, 0.08)))
_SCOPES = (
    ("marketing", "all"),
    ("marketing", "call"),
    ("marketing", "sms"),
    ("marketing", "call;sms"),
    ("all", "all"),
    ("marketing;analytics", "email"),
    ("marketing", "email;push"),
)
_SCOPES_CUM = list(accumulate((0.45, 0.15, 0.1, 0.1, 0.07, 0.06, 0.07)))
_GARBLED = (
    ("маркетинг", "all"),
    ("mktg", "call"),
    ("marketing", "телефон"),
    ("marketing;adverts", "sms"),
    ("реклама", "звонки"),
)
_PARTNER_CODES = ("ads_sms", "ads_email", "ads_call", "share")
_PARTNER_CODES_CUM = list(accumulate((0.4, 0.3, 0.1, 0.2)))
_RESTRICTED = ("call", "call;sms", "sms", "email", "push")
_WEB_FORMS = ("signup-v3", "signup-v4", "promo-landing", "mobile-app")
_BRANCHES = ("MSK1", "MSK2", "MSK7", "SPB1", "SPB3", "KZN1", "SMR2", "EKB1", "NSK4", "NNV2")
_OPERATORS = tuple(f"operator{n:02d}" for n in range(1, 41))
BAD_KINDS = (
    ("ingest", "column_count"),
    ("ingest", "invalid_json"),
    ("ingest", "invalid_date"),
    ("ingest", "unknown_value"),
    ("ingest", "missing_required"),
    ("ingest", "invalid_encoding"),
    ("validate", "wording_hash_mismatch"),
    ("validate", "wording_not_in_force"),
    ("validate", "garbled_scope"),
    ("validate", "unknown_consent_code"),
)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


@dataclass
class Person:
    """What the generator knows about one real person after writing their records."""

    person_id: str
    facts: truth.Facts = field(default_factory=truth.Facts)
    records: list[tuple[str, str]] = field(default_factory=list)  # loaded (source, id)
    tainted: bool = False  # carries a deliberately bad row
    excluded: bool = False  # erase / restrict requests: not asked about


class ChunkWriter:
    """Writes the stories of one chunk of people."""

    def __init__(
        self,
        cfg: GeneratorConfig,
        landing: Landing,
        xref: Table,
        bad: Table,
        catalog: truth.Catalog,
        rnd: random.Random,
        people: PeopleChunk,
    ) -> None:
        self.cfg = cfg
        self.nz = cfg.noise
        self.land = landing
        self.xref = xref
        self.bad = bad
        self.cat = catalog
        self.rnd = rnd
        self.P = people
        self.t0 = datetime.combine(cfg.start, datetime.min.time())
        self.span = ((cfg.end - cfg.start).days + 1) * DAY - 1
        self.change = datetime.combine(cat_mod.change_date(cfg.start, cfg.end), datetime.min.time())
        self.bad_count = 0

    # ------------------------------------------------------------------ helpers
    def at(self, sec: float, office: bool = False) -> datetime:
        t = self.t0 + timedelta(seconds=int(sec))
        if office:
            r = self.rnd
            t = t.replace(hour=r.randint(9, 19), minute=r.randint(0, 59), second=r.randint(0, 59))
        return t

    def sec(self, t: datetime) -> float:
        return (t - self.t0).total_seconds()

    def between(self, lo: float, hi: float | None = None) -> float:
        hi = self.span if hi is None else hi
        return lo if hi <= lo else lo + self.rnd.random() * (hi - lo)

    def name(self, i: int, latin_rate: float = 0.0) -> tuple[str, str, str]:
        r, nz, P = self.rnd, self.nz, self.P
        ln, fn, mn = P.last[i], P.first[i], P.middle[i]
        if r.random() < nz.yo_to_e:
            ln, fn, mn = noise.yo_to_e(ln), noise.yo_to_e(fn), noise.yo_to_e(mn)
        if r.random() < nz.typo:
            if r.random() < 0.6:
                ln = noise.typo(ln, r)
            else:
                fn = noise.typo(fn, r)
        if r.random() < nz.swapped_names:
            ln, fn = fn, ln
        if latin_rate and r.random() < latin_rate:
            ln, fn, mn = noise.to_latin(ln), noise.to_latin(fn), noise.to_latin(mn)
        if r.random() < nz.missing_field:
            mn = ""
        if r.random() < nz.upper_case:
            ln, fn, mn = ln.upper(), fn.upper(), mn.upper()
        return ln, fn, mn

    def birth(self, i: int, can_miss: bool = False) -> str:
        r = self.rnd
        if can_miss and r.random() < self.nz.missing_field:
            return ""
        b = self.P.birth[i]
        if r.random() < self.nz.date_swap:
            b = noise.swap_day_month(b) or b
        return b.isoformat()

    def phone(self, i: int) -> str:
        r = self.rnd
        if r.random() < self.nz.missing_field:
            return ""
        national = self.P.old_phone[i] if r.random() < self.nz.stale_contact else self.P.phone[i]
        return noise.phone(national, r, self.nz.phone_format)

    def email(self, i: int) -> str:
        r = self.rnd
        if r.random() < self.nz.missing_field:
            return ""
        return self.P.old_email[i] if r.random() < self.nz.stale_contact else self.P.email[i]

    def opt(self, value: str) -> str:
        return "" if self.rnd.random() < self.nz.missing_field else value

    def add_xref(self, p: Person, source: str, rid: str) -> None:
        p.records.append((source, rid))
        self.xref.write((source, rid, p.person_id))

    def bad_row(
        self,
        stage: str,
        rule: str,
        source: str,
        b: int,
        name: str,
        line: int,
        rid: str,
        description: str,
    ) -> None:
        self.bad.write(
            (source, self.land.ids[source][b], name, str(line), rid, stage, rule, description)
        )
        self.bad_count += 1

    # --------------------------------------------------------------- row makers
    def client_row(self, i: int, crm_id: str, created: float) -> tuple[list[str], int]:
        ln, fn, mn = self.name(i)
        updated = self.at(self.between(created, min(self.span, created + 60 * DAY)))
        row = [
            crm_id,
            ln,
            fn,
            mn,
            self.birth(i),
            self.phone(i),
            self.email(i),
            self.opt(self.P.passport[i]),
            self.opt(self.P.address[i]),
            iso(updated),
        ]
        return row, self.land.batch_of("crm", updated.date())

    def web_person(self, i: int) -> dict[str, str | None]:
        ln, fn, mn = self.name(i, self.nz.latin_web)
        return {
            "last_name": ln,
            "first_name": fn,
            "middle_name": mn or None,
            "birth_date": self.birth(i, can_miss=True) or None,
            "phone": self.phone(i) or None,
            "email": self.email(i) or None,
        }

    def web_event(
        self,
        event_id: str,
        t: datetime,
        etype: str,
        acc: str | None,
        person: dict,
        consents: list[dict],
        form: str,
        conf: str,
    ) -> dict:
        return {
            "event_id": event_id,
            "occurred_at": iso(t),
            "event_type": etype,
            "account_id": acc,
            "person": person,
            "consents": consents,
            "form_id": form,
            "confirmation": conf,
            "ip": self.ip(),
            "evidence_url": f"https://logs.example.ru/{event_id}",
        }

    def ip(self) -> str:
        r = self.rnd.getrandbits(32)
        return f"{(r >> 24) % 223 + 1}.{(r >> 16) & 255}.{(r >> 8) & 255}.{r & 255 or 1}"

    def consent(self, code: str, t: datetime) -> dict:
        w = self.cat.wording_in_force(code, t.date())
        assert w is not None
        return {
            "consent_code": code,
            "granted": True,
            "wording_version": w.version,
            "wording_sha256": w.sha256,
        }

    def fio(self, i: int) -> str:
        r, nz, P = self.rnd, self.nz, self.P
        ln, fn, mn = P.last[i], P.first[i], P.middle[i]
        if r.random() < nz.yo_to_e:
            ln, fn, mn = noise.yo_to_e(ln), noise.yo_to_e(fn), noise.yo_to_e(mn)
        if r.random() < nz.typo:
            ln = noise.typo(ln, r)
        if r.random() < nz.initials:
            s = noise.initials(ln, fn, "" if r.random() < nz.missing_field else mn)
        elif r.random() < nz.swapped_names:
            s = f"{fn} {ln} {mn}"
        else:
            s = f"{ln} {fn} {mn}"
        return s.upper() if r.random() < nz.upper_case else s

    # -------------------------------------------------------------------- story
    def story(self, i: int) -> Person:
        r, P = self.rnd, self.P
        idx = P.first_index + i
        p = Person(f"P{idx:09d}")
        self.ev_k = 0
        join = self.rnd.random() * 0.85 * self.span
        u = r.random()
        kind = "customer" if u < 0.85 else "web" if u < 0.95 else "partner"
        rows = 0
        crm_ids: list[tuple[str, float]] = []
        contracts: list[tuple[str, datetime]] = []
        true_ticks: list[tuple[str, str, str, datetime]] = []
        if kind == "customer":
            crm_main = f"K-{_perm(idx * 4, 7_777, 10**10):010d}"
            row, b = self.client_row(i, crm_main, join)
            self.land.csv("crm", b, "clients.csv", row)
            self.add_xref(p, "crm", crm_main)
            crm_ids.append((crm_main, join))
            rows += 1
            if r.random() < self.nz.crm_duplicate:
                dup_at = join + (30 + r.random() * 670) * DAY
                if dup_at < self.span:
                    crm_dup = f"K-{_perm(idx * 4 + 1, 7_777, 10**10):010d}"
                    row, b = self.client_row(i, crm_dup, dup_at)
                    self.land.csv("crm", b, "clients.csv", row)
                    self.add_xref(p, "crm", crm_dup)
                    crm_ids.append((crm_dup, dup_at))
                    rows += 1
            n = r.choices(range(1, 6), cum_weights=_NPROD_CUM)[0]
            for j in range(n):
                s = join if j == 0 else self.between(join)
                signed = self.at(s, office=True)
                prod = r.choices(cat_mod.PRODUCTS, cum_weights=_PRODUCT_CUM)[0]
                owners = [c for c, created in crm_ids if created <= s]
                owner = owners[-1] if len(owners) > 1 and r.random() < 0.5 else owners[0]
                closed = None
                if r.random() < 0.35:
                    cs = s + (60 + r.random() * 1500) * DAY
                    if cs < self.span:
                        closed = self.at(cs, office=True)
                known = closed or signed
                paper = r.random() < 0.06
                if paper:
                    known = max(known, signed + timedelta(days=20 + r.randrange(130)))
                number = f"{prod.prefix}-{signed.year}-{_perm(idx * 16 + j, 31_337):09d}"
                cid = f"D-{_perm(idx * 16 + j, 55_555, 10**10):010d}"
                scan = f"https://scans.example.ru/{number}.pdf"
                b = self.land.batch_of("crm", known.date())
                self.land.csv(
                    "crm",
                    b,
                    "contracts.csv",
                    [
                        cid,
                        owner,
                        number,
                        prod.system_code,
                        prod.product_type,
                        prod.product_name,
                        iso(signed),
                        iso(closed) if closed else "",
                        r.choice(_BRANCHES),
                        scan if paper or r.random() < 0.7 else "",
                    ],
                )
                rows += 1
                contracts.append((number, signed))
                p.facts.contracts.append(
                    truth.Contract(number, prod.system_code, prod.product_type, signed)
                )
                if r.random() < 0.45:
                    for flag in r.sample(cat_mod.MARKETING_FLAGS, r.randint(1, 2)):
                        value = r.random() >= 0.15
                        set_at = signed + timedelta(seconds=r.randint(60, 1800))
                        rows += self._tick(
                            p,
                            owner,
                            cid,
                            flag,
                            value,
                            set_at,
                            set_at.date() if not paper else known.date(),
                            scan if paper else "",
                        )
                        if value:
                            true_ticks.append((owner, cid, flag, set_at))
            if r.random() < 0.15:  # a client-level tick, often a refusal
                flag = r.choice(cat_mod.MARKETING_FLAGS)
                set_at = self.at(self.between(join), office=True)
                rows += self._tick(
                    p, crm_ids[0][0], "", flag, r.random() >= 0.4, set_at, set_at.date(), ""
                )

        acc = None
        acc_person: dict | None = None
        if kind == "web" or r.random() < 0.3:
            acc = f"ACC-{_perm(idx * 2, 99_991):09d}"
            reg = self.at(join if kind == "web" else self.between(join))
            acc_person = self.web_person(i)
            codes = [
                c
                for c, pr in (
                    ("pd_basic", 0.7),
                    ("ads_email", 0.6),
                    ("ads_sms", 0.3),
                    ("ads_push", 0.3),
                )
                if r.random() < pr
            ] or ["ads_email"]
            conf = r.choices(_CONFIRM, cum_weights=_CONFIRM_CUM)[0]
            rows += self._web(
                p,
                idx,
                reg,
                "registration",
                acc,
                acc_person,
                [self.consent(c, reg) for c in codes],
                r.choice(_WEB_FORMS),
                conf,
            )
            self.add_xref(p, "web", acc)
            granted = [c for c in codes if c != "pd_basic"]
            last = self.sec(reg)
            for _ in range(r.choices((0, 1, 2, 3), cum_weights=(0.45, 0.75, 0.9, 1.0))[0]):
                last = self.between(last)
                t = self.at(last)
                u = r.random()
                if u < 0.35:
                    rows += self._web(
                        p,
                        idx,
                        t,
                        "profile_update",
                        acc,
                        acc_person,
                        [],
                        "profile",
                        r.choice(("none", "sms_code")),
                    )
                elif u < 0.7:
                    code = r.choice(granted) if granted else r.choice(cat_mod.MARKETING_CODES)
                    rows += self._web(
                        p,
                        idx,
                        t,
                        "consent_withdrawn",
                        acc,
                        acc_person,
                        [
                            {
                                "consent_code": code,
                                "granted": False,
                                "wording_version": None,
                                "wording_sha256": None,
                            }
                        ],
                        "profile-consents",
                        r.choice(("sms_code", "email_link")),
                    )
                    if code in granted:
                        granted.remove(code)
                else:
                    code = r.choice(cat_mod.MARKETING_CODES)
                    rows += self._web(
                        p,
                        idx,
                        t,
                        "consent_given",
                        acc,
                        acc_person,
                        [self.consent(code, t)],
                        "profile-consents",
                        r.choices(_CONFIRM, cum_weights=_CONFIRM_CUM)[0],
                    )
                    granted.append(code)

        if r.random() < (0.08 if kind == "customer" else 0.05):
            rec_s = self.between(join + 30 * DAY)
            if rec_s < self.span:
                rows += self._ticket(p, i, idx, 0, rec_s, contracts, acc, acc_person, true_ticks)

        if kind == "partner" or r.random() < 0.06:
            rows += self._partner(
                p, i, idx, 0, self.at(join if kind == "partner" else self.between(join))
            )

        # one deliberately bad row, at bad_row_rate of this person's rows
        if r.random() < self.cfg.bad_row_rate * rows:
            self._bad(p, i, idx, join, crm_ids, acc, acc_person)
        return p

    def _tick(
        self,
        p: Person,
        crm_id: str,
        cid: str,
        flag: str,
        value: bool,
        set_at: datetime,
        known: date,
        scan: str,
    ) -> int:
        b = self.land.batch_of("crm", known)
        self.land.csv(
            "crm",
            b,
            "consent_flags.csv",
            [
                crm_id,
                cid,
                flag,
                "true" if value else "false",
                iso(set_at),
                self.rnd.choice(_OPERATORS),
                scan,
            ],
        )
        p.facts.ticks.append(truth.Tick(flag, value, set_at))
        return 1

    def event_id(self, idx: int) -> str:
        self.ev_k += 1
        return f"EV-{_perm(idx * 32 + self.ev_k, 4_321, 10**10):010d}"

    def _web(
        self,
        p: Person,
        idx: int,
        t: datetime,
        etype: str,
        acc: str,
        person: dict,
        consents: list[dict],
        form: str,
        conf: str,
    ) -> int:
        eid = self.event_id(idx)
        b = self.land.batch_of("web", t.date())
        self.land.json(
            "web",
            b,
            "events.jsonl",
            self.web_event(eid, t, etype, acc, person, consents, form, conf),
        )
        for c in consents:
            p.facts.web.append(
                truth.WebConsent(
                    c["consent_code"],
                    c["granted"],
                    c["wording_version"],
                    c["wording_sha256"],
                    t,
                    conf,
                )
            )
        return 1

    def _ticket_row(
        self, i: int, tid: str, rec: datetime, rtype: str, contract: str, sp: str, sc: str
    ) -> tuple[list[str], int]:
        r = self.rnd
        closed = rec + timedelta(days=1 + r.randrange(15), seconds=r.randrange(DAY))
        closed_s = iso(closed) if self.sec(closed) < self.span else ""
        phone = self.phone(i) if r.random() < 0.75 else ""
        email = self.email(i) if r.random() < 0.4 else ""
        passport = self.P.passport[i] if r.random() < 0.3 else ""
        if not (phone or email or passport or contract):
            phone = noise.phone(self.P.phone[i], r, self.nz.phone_format)
        scan = f"https://scans.example.ru/letters/{tid}.pdf" if r.random() < 0.7 else ""
        row = [
            tid,
            iso(rec),
            rtype,
            self.fio(i),
            self.birth(i),
            phone,
            email,
            passport,
            contract,
            sp,
            sc,
            scan,
            closed_s,
        ]
        return row, self.land.batch_of("helpdesk", (closed if closed_s else rec).date())

    def _ticket(
        self,
        p: Person,
        i: int,
        idx: int,
        k: int,
        rec_s: float,
        contracts: list[tuple[str, datetime]],
        acc: str | None,
        acc_person: dict | None,
        true_ticks: list[tuple[str, str, str, datetime]],
    ) -> int:
        r = self.rnd
        rec = self.at(rec_s, office=True)
        rtype = r.choices(_REQUESTS, cum_weights=_REQUESTS_CUM)[0]
        sp, sc = (
            r.choices(_SCOPES, cum_weights=_SCOPES_CUM)[0]
            if rtype == "revoke_consent"
            else ("", "")
        )
        if rtype == "restrict_processing":
            sp, sc = "all", "all"
        known = [n for n, signed in contracts if signed < rec]
        contract = r.choice(known) if known and r.random() < 0.6 else ""
        tid = f"HD-{_perm(idx * 4 + k, 2_024, 10**10):010d}"
        row, b = self._ticket_row(i, tid, rec, rtype, contract, sp, sc)
        self.land.csv("helpdesk", b, "tickets.csv", row)
        self.add_xref(p, "helpdesk", tid)
        p.facts.tickets.append(truth.Ticket(rtype, sp, sc, rec))
        rows = 1
        if rtype in ("erase_data", "restrict_processing"):
            p.excluded = True
        if rtype != "revoke_consent":
            return rows
        # a CRM re-export of an old tick after the revocation: must not re-open anything
        old = [t for t in true_ticks if t[3] < rec]
        if old and r.random() < 0.3:
            owner, cid, flag, set_at = r.choice(old)
            known = rec + timedelta(days=1 + r.randrange(60))
            rows += self._tick(p, owner, cid, flag, True, set_at, known.date(), "")
        # a re-grant later on
        if r.random() < 0.35:
            t_s = self.between(rec_s + 7 * DAY)
            if t_s < self.span and sp == "marketing":
                ch = r.choice(("call", "sms", "email", "push")) if sc == "all" else sc.split(";")[0]
                code = f"ads_{ch}"
                t = self.at(t_s)
                if acc is not None and acc_person is not None:
                    rows += self._web(
                        p,
                        idx,
                        t,
                        "consent_given",
                        acc,
                        acc_person,
                        [self.consent(code, t)],
                        "profile-consents",
                        "sms_code",
                    )
                elif true_ticks:
                    flag = {
                        "ads_call": "CALL_OK",
                        "ads_sms": "SMS_OK",
                        "ads_email": "MAIL_OK",
                        "ads_push": "PUSH_OK",
                    }[code]
                    rows += self._tick(p, true_ticks[0][0], "", flag, True, t, t.date(), "")
        return rows

    def _partner_row(
        self,
        i: int,
        pc: str,
        pcid: str,
        code: str,
        granted: str,
        obtained: datetime,
        restricted: str,
    ) -> tuple[list[str], datetime | None, int]:
        r = self.rnd
        until = truth.add_months(obtained, 24) if r.random() < 0.7 else None
        ln, fn, mn = self.name(i, self.nz.latin_partner)
        row = [
            pc,
            pcid,
            ln,
            fn,
            mn,
            self.birth(i, can_miss=True),
            self.phone(i),
            self.email(i),
            code,
            granted,
            iso(obtained),
            iso(until) if until else "",
            restricted,
            f"AG-{pc}-{1 + (i % 3)}",
            f"https://partners.example.ru/{pc}/{pcid}",
        ]
        return row, until, self.land.batch_of("partner", obtained.date())

    def _partner(self, p: Person, i: int, idx: int, k: int, obtained: datetime) -> int:
        r = self.rnd
        pc = r.choice(cat_mod.PARTNERS)
        code = r.choices(_PARTNER_CODES, cum_weights=_PARTNER_CODES_CUM)[0]
        if code == "share":
            code = f"share_{pc.lower()}"
        granted = r.random() >= 0.05
        restricted = r.choice(_RESTRICTED) if granted and r.random() < 0.3 else ""
        pcid = f"{pc[0]}-{_perm(idx * 2 + k, 8_080):09d}"
        row, until, b = self._partner_row(
            i, pc, pcid, code, "true" if granted else "false", obtained, restricted
        )
        self.land.csv("partner", b, "partner_clients.csv", row)
        self.add_xref(p, "partner", f"{pc}:{pcid}")
        p.facts.partner.append(
            truth.PartnerRecord(
                pc,
                code,
                granted,
                obtained,
                until,
                tuple(restricted.split(";")) if restricted else (),
            )
        )
        return 1

    # ---------------------------------------------------------------- bad rows
    def _bad(
        self,
        p: Person,
        i: int,
        idx: int,
        join: float,
        crm_ids: list[tuple[str, float]],
        acc: str | None,
        acc_person: dict | None,
    ) -> None:
        from . import badrows

        p.tainted = True
        stage, rule = self.rnd.choice(BAD_KINDS)
        badrows.write(self, p, i, idx, join, crm_ids, acc, acc_person, stage, rule)
