"""A deliberately simple, independent implementation of DESIGN section 7.

It shares no code with the pipeline: it works on plain facts of one person
(contracts, CRM ticks, web consents, helpdesk requests, partner records) and a
catalog, and answers "what is the status of (purpose, channel) at instant t".
All datetimes are naive Europe/Moscow wall-clock time (+03:00, no DST).
Every semantic choice is listed in the truth README written by the generator
(see ``TRUTH_README`` in :mod:`sources.generator.writers`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

PURPOSES = ("processing", "storage", "third_party_transfer", "marketing", "analytics")
CHANNELS = ("call", "sms", "email", "messenger", "push", "post")

GRANTED, REVOKED, EXPIRED, RESTRICTED, NONE = "granted", "revoked", "expired", "restricted", "none"


def add_months(t: datetime, months: int) -> datetime:
    """Calendar months; a day past the end of the target month is clamped to its last day."""
    y, m = divmod(t.month - 1 + months, 12)
    y += t.year
    m += 1
    for day in (t.day, 30, 29, 28):
        try:
            return t.replace(year=y, month=m, day=day)
        except ValueError:
            continue
    raise ValueError(t)  # pragma: no cover


# --------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class ConsentType:
    code: str
    purpose: str
    channel: str
    partner_code: str
    term_months: int | None


@dataclass(frozen=True)
class Wording:
    code: str
    version: str
    effective_from: date
    effective_to: date | None
    sha256: str

    def in_force(self, d: date) -> bool:
        return self.effective_from <= d and (self.effective_to is None or d <= self.effective_to)


@dataclass(frozen=True)
class MatrixRule:
    rule_id: str
    match_kind: str
    match_value: str
    code: str
    version: str | None
    term_months: int | None
    effective_from: date
    effective_to: date | None

    def in_force(self, d: date) -> bool:
        return self.effective_from <= d and (self.effective_to is None or d <= self.effective_to)

    def matches(self, number: str, system_code: str, product_type: str) -> bool:
        if self.match_kind == "system_code":
            return system_code == self.match_value
        if self.match_kind == "product_type":
            return product_type == self.match_value
        if self.match_kind == "contract_mask":
            return _like(self.match_value).fullmatch(number) is not None
        return False


def _like(mask: str) -> re.Pattern[str]:
    parts = []
    for ch in mask:
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


@dataclass
class Catalog:
    types: dict[str, ConsentType]
    wordings: list[Wording]
    rules: list[MatrixRule]
    flag_map: dict[str, str]
    _by_code: dict[str, list[Wording]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for w in self.wordings:
            self._by_code.setdefault(w.code, []).append(w)

    def wording(self, code: str, version: str) -> Wording | None:
        for w in self._by_code.get(code, ()):
            if w.version == version:
                return w
        return None

    def wording_in_force(self, code: str, d: date) -> Wording | None:
        for w in self._by_code.get(code, ()):
            if w.in_force(d):
                return w
        return None

    @classmethod
    def from_dir(cls, path: Path) -> Catalog:
        """Read one catalog batch folder (DESIGN section 5)."""

        def rows(name: str) -> list[dict[str, str]]:
            with open(path / name, encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f))

        def d(s: str) -> date | None:
            return date.fromisoformat(s) if s else None

        types = {
            r["consent_code"]: ConsentType(
                r["consent_code"],
                r["purpose"],
                r["channel"],
                r["partner_code"],
                int(r["term_months"]) if r["term_months"] else None,
            )
            for r in rows("consent_types.csv")
        }
        wordings = [
            Wording(
                r["consent_code"],
                r["wording_version"],
                d(r["effective_from"]),
                d(r["effective_to"]),
                r["text_sha256"],
            )
            for r in rows("wordings.csv")
        ]
        rules = [
            MatrixRule(
                r["rule_id"],
                r["match_kind"],
                r["match_value"],
                r["consent_code"],
                r["wording_version"] or None,
                int(r["term_months"]) if r["term_months"] else None,
                d(r["effective_from"]),
                d(r["effective_to"]),
            )
            for r in rows("product_matrix.csv")
        ]
        flag_map = {r["flag_code"]: r["consent_code"] for r in rows("crm_flag_map.csv")}
        return cls(types, wordings, rules, flag_map)


# ----------------------------------------------------------------------- facts
@dataclass(frozen=True)
class Contract:
    number: str
    system_code: str
    product_type: str
    signed_at: datetime


@dataclass(frozen=True)
class Tick:
    flag_code: str
    value: bool
    set_at: datetime


@dataclass(frozen=True)
class WebConsent:
    code: str
    granted: bool
    version: str | None
    sha256: str | None
    at: datetime
    confirmation: str


@dataclass(frozen=True)
class Ticket:
    request_type: str
    scope_purposes: str
    scope_channels: str
    received_at: datetime


@dataclass(frozen=True)
class PartnerRecord:
    partner_code: str
    code: str
    granted: bool
    obtained_at: datetime
    valid_until: datetime | None
    restricted_channels: tuple[str, ...]


@dataclass
class Facts:
    """Everything the feeds say about one real person."""

    contracts: list[Contract] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    web: list[WebConsent] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    partner: list[PartnerRecord] = field(default_factory=list)


# ---------------------------------------------------------------------- events
@dataclass(frozen=True)
class Grant:
    purpose: str
    channel: str  # concrete channel
    start: datetime
    end: datetime | None
    confirmed: bool = True  # False only for web consents with confirmation "none"
    via: str = ""


@dataclass(frozen=True)
class Revoke:
    pairs: frozenset[tuple[str, str]]
    at: datetime
    via: str = ""


@dataclass(frozen=True)
class Restriction:
    channel: str
    start: datetime
    end: datetime | None
    via: str = ""


@dataclass
class Derived:
    grants: list[Grant] = field(default_factory=list)
    revokes: list[Revoke] = field(default_factory=list)
    restrictions: list[Restriction] = field(default_factory=list)

    def instants(self) -> Iterable[datetime]:
        for g in self.grants:
            yield g.start
            if g.end is not None:
                yield g.end
        for r in self.revokes:
            yield r.at
        for x in self.restrictions:
            yield x.start
            if x.end is not None:
                yield x.end


def _channels(channel: str) -> tuple[str, ...]:
    return CHANNELS if channel == "any" else (channel,)


def _grant(
    cat: Catalog,
    out: Derived,
    code: str,
    start: datetime,
    end: datetime | None,
    confirmed: bool,
    via: str,
) -> None:
    ct = cat.types[code]
    if ct.partner_code:  # partner-specific consents are outside purpose/channel questions
        return
    for ch in _channels(ct.channel):
        out.grants.append(Grant(ct.purpose, ch, start, end, confirmed, via))


def _term_end(start: datetime, months: int | None) -> datetime | None:
    return add_months(start, months) if months else None


def _axis(text: str, codes: tuple[str, ...], also_all: tuple[str, ...] = ()):
    """One axis of a helpdesk scope: (the codes it stands for, whether it could be read).

    Codes are separated by ';' or ','; case, blanks, '-' and '_' do not matter; `all` (and
    `also_all`) means every code of the axis. An axis that is empty or has a code that cannot
    be read stands for every code too (rule 4), and is not readable."""
    keys = {code.replace("_", ""): code for code in codes}
    read, says_all = set(), False
    for written in (part.strip() for part in re.split("[;,]", text)):
        if not written:
            continue
        key = re.sub(r"[\s_-]+", "", written.lower())
        if key not in keys and key != "all" and key not in also_all:
            return codes, False
        says_all = says_all or key == "all" or key in also_all
        read.add(keys.get(key))
    if not read:
        return codes, False
    return (codes if says_all else tuple(sorted(read))), True


def scope_is_readable(purposes: str, channels: str) -> bool:
    """Whether both axes of a helpdesk scope could be read (else it is reported as garbled)."""
    return _axis(purposes, PURPOSES)[1] and _axis(channels, CHANNELS, ("any",))[1]


def _scope(purposes: str, channels: str) -> frozenset[tuple[str, str]]:
    """A helpdesk scope, each axis read on its own: an unreadable axis is all (rule 4)."""
    pur = _axis(purposes, PURPOSES)[0]
    chs = _axis(channels, CHANNELS, also_all=("any",))[0]
    return frozenset((p, c) for p in pur for c in chs)


def derive(cat: Catalog, facts: Facts) -> Derived:
    """Turn raw facts into grants, revocations and restrictions (rules 1-5)."""
    out = Derived()
    for c in facts.contracts:
        d = c.signed_at.date()
        for rule in cat.rules:
            if not rule.in_force(d) or not rule.matches(c.number, c.system_code, c.product_type):
                continue
            if rule.code not in cat.types:
                continue
            if rule.version is not None:
                w = cat.wording(rule.code, rule.version)
                if w is None or not w.in_force(d):
                    continue
            elif cat.wording_in_force(rule.code, d) is None:
                continue
            term = rule.term_months or cat.types[rule.code].term_months
            _grant(
                cat,
                out,
                rule.code,
                c.signed_at,
                _term_end(c.signed_at, term),
                True,
                f"contract {c.number} rule {rule.rule_id}",
            )
    for t in facts.ticks:
        code = cat.flag_map.get(t.flag_code)
        if code is None or code not in cat.types:
            continue  # unknown flag: neither a grant nor a revocation
        if t.value:
            if cat.wording_in_force(code, t.set_at.date()) is None:
                continue
            _grant(
                cat,
                out,
                code,
                t.set_at,
                _term_end(t.set_at, cat.types[code].term_months),
                True,
                f"tick {t.flag_code}",
            )
        else:
            out.revokes.append(Revoke(_pairs_of(cat, code), t.set_at, f"tick {t.flag_code}"))
    for w in facts.web:
        if w.code not in cat.types:
            continue
        if not w.granted:
            out.revokes.append(Revoke(_pairs_of(cat, w.code), w.at, f"web {w.code}"))
            continue
        if w.version is None:
            continue
        wd = cat.wording(w.code, w.version)
        if wd is None or not wd.in_force(w.at.date()):
            continue
        if w.sha256 is not None and w.sha256 != wd.sha256:
            continue
        _grant(
            cat,
            out,
            w.code,
            w.at,
            _term_end(w.at, cat.types[w.code].term_months),
            w.confirmation != "none",
            f"web {w.code}",
        )
    for tk in facts.tickets:
        if tk.request_type not in ("revoke_consent", "restrict_processing"):
            continue
        # an unreadable axis is honoured as all, the other axis as written (rule 4)
        pairs = _scope(tk.scope_purposes, tk.scope_channels)
        out.revokes.append(Revoke(pairs, tk.received_at, f"helpdesk {tk.request_type}"))
    for p in facts.partner:
        if p.code not in cat.types:
            continue
        ct = cat.types[p.code]
        end = p.valid_until or _term_end(p.obtained_at, ct.term_months)
        if p.granted:
            if cat.wording_in_force(p.code, p.obtained_at.date()) is not None:
                _grant(cat, out, p.code, p.obtained_at, end, True, f"partner {p.partner_code}")
        else:
            out.revokes.append(
                Revoke(_pairs_of(cat, p.code), p.obtained_at, f"partner {p.partner_code}")
            )
        for ch in p.restricted_channels:
            out.restrictions.append(
                Restriction(ch, p.obtained_at, end, f"partner {p.partner_code}")
            )
    return out


def _pairs_of(cat: Catalog, code: str) -> frozenset[tuple[str, str]]:
    ct = cat.types[code]
    return frozenset((ct.purpose, c) for c in _channels(ct.channel))


def status(
    ev: Derived,
    purpose: str,
    channel: str,
    t: datetime,
    *,
    count_unconfirmed: bool = True,
    restriction_any_purpose: bool = True,
    revoke_wins_tie: bool = True,
) -> str:
    """Status of (purpose, channel) at instant t (DESIGN section 7).

    The keyword switches exist only to detect questions whose answer depends on a
    semantic choice; the defaults are the documented semantics.
    """
    if restriction_any_purpose or purpose == "marketing":
        for r in ev.restrictions:
            if r.channel == channel and r.start <= t and (r.end is None or t < r.end):
                return RESTRICTED
    key = (purpose, channel)
    grants = [
        g
        for g in ev.grants
        if (g.purpose, g.channel) == key and (count_unconfirmed or g.confirmed) and g.start <= t
    ]
    revokes = [r.at for r in ev.revokes if key in r.pairs and r.at <= t]

    def killed(g: Grant) -> bool:
        if revoke_wins_tie:
            return any(r >= g.start for r in revokes)
        return any(r > g.start for r in revokes)

    for g in grants:
        if (g.end is None or t < g.end) and not killed(g):
            return GRANTED
    last_grant = max((g.start for g in grants), default=None)
    last_revoke = max(revokes, default=None)
    if last_revoke is not None and (last_grant is None or last_revoke >= last_grant):
        return REVOKED
    if last_grant is not None:
        # the newest grant was not revoked after it, so it has run out (or a revoked
        # older one and an expired newer one): expired
        return EXPIRED
    return NONE


def answer(cat: Catalog, facts: Facts, purpose: str, channel: str, t: datetime) -> tuple[bool, str]:
    s = status(derive(cat, facts), purpose, channel, t)
    return s == GRANTED, s


def unambiguous(
    ev: Derived, purpose: str, channel: str, t: datetime, margin_seconds: int = 120
) -> str | None:
    """The status, or None when it depends on a semantic choice or on a boundary instant."""
    for x in ev.instants():
        if abs((x - t).total_seconds()) <= margin_seconds:
            return None
    base = status(ev, purpose, channel, t)
    for kw in (
        {"count_unconfirmed": False},
        {"restriction_any_purpose": False},
        {"revoke_wins_tie": False},
    ):
        if status(ev, purpose, channel, t, **kw) != base:
            return None
    return base
