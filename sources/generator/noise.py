"""Noise as it happens in real sources: typos, initials, case, ё/е, Latin, phone formats."""

from __future__ import annotations

import random
from datetime import date

from .people import latin

_ROWS = ("йцукенгшщзхъ", "фывапролджэ", "ячсмитьбю")
_NEIGHBOURS: dict[str, str] = {}
for _row in _ROWS:
    for _i, _ch in enumerate(_row):
        _NEIGHBOURS[_ch] = _row[max(0, _i - 1) : _i] + _row[_i + 1 : _i + 2]


def typo(s: str, rnd: random.Random) -> str:
    """One keyboard slip: neighbour key, dropped, doubled or transposed letter."""
    if len(s) < 3:
        return s
    i = rnd.randrange(1, len(s))
    op = rnd.randrange(4)
    ch = s[i]
    if op == 0:
        nb = _NEIGHBOURS.get(ch.lower())
        if nb:
            r = rnd.choice(nb)
            return s[:i] + (r.upper() if ch.isupper() else r) + s[i + 1 :]
        op = 1
    if op == 1:
        return s[:i] + s[i + 1 :]
    if op == 2:
        return s[:i] + ch + s[i:]
    if i < len(s) - 1:
        return s[:i] + s[i + 1] + ch + s[i + 2 :]
    return s[: i - 1] + s[i] + s[i - 1]


def yo_to_e(s: str) -> str:
    return s.replace("ё", "е").replace("Ё", "Е")


def initials(last: str, first: str, middle: str) -> str:
    """ "Иванов И.П." (or "Иванов И." without a patronymic)."""
    out = f"{last} {first[:1]}."
    if middle:
        out += f"{middle[:1]}."
    return out


def to_latin(s: str) -> str:
    return latin(s) if s else s


PHONE_FORMATS = (
    "+7 ({a}) {b}-{c}-{d}",
    "8 ({a}) {b}-{c}-{d}",
    "8{a}{b}{c}{d}",
    "{a}{b}{c}{d}",
    "8-{a}-{b}-{c}-{d}",
    "+7 {a} {b} {c} {d}",
    "8 {a} {b} {c} {d}",
)


def phone(national: str, rnd: random.Random, rate: float) -> str:
    """Canonical +7XXXXXXXXXX, or with probability `rate` one of the other formats."""
    if rnd.random() >= rate:
        return "+7" + national
    f = rnd.choice(PHONE_FORMATS)
    return f.format(a=national[:3], b=national[3:6], c=national[6:8], d=national[8:])


def swap_day_month(d: date) -> date | None:
    if d.day <= 12 and d.day != d.month:
        return date(d.year, d.day, d.month)
    return None
