"""Real people: Russian names with realistic frequencies, birth dates, contacts, documents.

Name lists come from Faker's ru_RU provider; frequencies follow a Zipf-like law over
the lists (surnames are already ordered by frequency; first names and patronymics
are re-ordered so that the common ones come first). Draws are vectorised per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
from faker.providers.address.ru_RU import Provider as _Address
from faker.providers.person.ru_RU import Provider as _Person
from unidecode import unidecode

_COMMON_MALE = [
    "Александр",
    "Сергей",
    "Дмитрий",
    "Андрей",
    "Алексей",
    "Максим",
    "Евгений",
    "Иван",
    "Михаил",
    "Владимир",
    "Николай",
    "Артём",
    "Игорь",
    "Денис",
    "Павел",
    "Олег",
    "Роман",
    "Виктор",
    "Юрий",
    "Антон",
    "Илья",
    "Кирилл",
    "Никита",
    "Вадим",
    "Константин",
    "Егор",
    "Василий",
    "Анатолий",
    "Геннадий",
    "Валерий",
    "Руслан",
    "Тимур",
    "Станислав",
    "Григорий",
    "Фёдор",
    "Борис",
    "Пётр",
]
_COMMON_FEMALE = [
    "Елена",
    "Ольга",
    "Наталья",
    "Татьяна",
    "Ирина",
    "Анна",
    "Мария",
    "Светлана",
    "Екатерина",
    "Юлия",
    "Анастасия",
    "Марина",
    "Людмила",
    "Галина",
    "Валентина",
    "Надежда",
    "Оксана",
    "Дарья",
    "Виктория",
    "Александра",
    "Ксения",
    "Алина",
    "Полина",
    "Вера",
    "Любовь",
    "Кристина",
    "Евгения",
    "Софья",
    "Лариса",
    "Алёна",
]
_COMMON_PATRONYMIC_STEMS = [
    "Александров",
    "Сергеев",
    "Владимиров",
    "Андреев",
    "Алексеев",
    "Николаев",
    "Викторов",
    "Михайлов",
    "Юрьев",
    "Игорев",
    "Евгеньев",
    "Дмитриев",
    "Анатольев",
    "Иванов",
    "Петров",
    "Васильев",
    "Геннадьев",
    "Валерьев",
    "Олегов",
    "Борисов",
]


def _ordered(names: tuple[str, ...], common: list[str]) -> tuple[str, ...]:
    head = list(dict.fromkeys(common))
    rest = sorted(set(names) - set(head))
    return tuple(head + rest)


def _patronymics(names: tuple[str, ...], suffix: str) -> tuple[str, ...]:
    common = [s + suffix for s in _COMMON_PATRONYMIC_STEMS]
    return _ordered(names, common)


MALE_FIRST = _ordered(_Person.first_names_male, _COMMON_MALE)
FEMALE_FIRST = _ordered(_Person.first_names_female, _COMMON_FEMALE)
MALE_MIDDLE = _patronymics(_Person.middle_names_male, "ич")
FEMALE_MIDDLE = _patronymics(_Person.middle_names_female, "на")
LAST_MALE = tuple(_Person.last_names_male)
LAST_FEMALE = tuple(_Person.last_names_female)
CITIES = tuple(c for c in _Address.city_names if "(" not in c)
STREETS = tuple(_Address.street_titles)
STREET_KINDS = ("ул.", "ул.", "ул.", "ул.", "пр.", "пер.", "бул.", "ш.", "наб.")
EMAIL_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "rambler.ru", "list.ru")
_EMAIL_W = np.array([0.34, 0.26, 0.2, 0.05, 0.05, 0.05, 0.05])


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


_W = {
    "last": _zipf(len(LAST_MALE), 0.9),
    "mf": _zipf(len(MALE_FIRST), 1.1),
    "ff": _zipf(len(FEMALE_FIRST), 1.1),
    "mm": _zipf(len(MALE_MIDDLE), 1.1),
    "fm": _zipf(len(FEMALE_MIDDLE), 1.1),
    "city": _zipf(len(CITIES), 0.6),
}


@lru_cache(maxsize=65536)
def latin(s: str) -> str:
    """Latin transliteration of a Cyrillic string as people type it on the web."""
    return unidecode(s).replace("'", "")


def _perm(n: int | np.ndarray, salt: int, mod: int = 10**9):
    """A bijection on [0, mod): deterministic, unique, not obviously sequential."""
    return (n * 738_219_347 + salt) % mod


@dataclass
class PeopleChunk:
    """Column arrays of one chunk of real people."""

    first_index: int
    male: np.ndarray
    last: list[str]
    first: list[str]
    middle: list[str]
    birth: list[date]
    phone: list[str]  # national 10 digits, "9161234567"
    old_phone: list[str]
    email: list[str]
    old_email: list[str]
    passport: list[str]  # "4612 345678"
    address: list[str]
    namesake: np.ndarray  # True where the full name was copied from another person

    def __len__(self) -> int:
        return len(self.last)


_BIRTH_LO = date(1944, 1, 1).toordinal()
_BIRTH_HI = date(2005, 12, 31).toordinal()


def draw(rng: np.random.Generator, first_index: int, n: int, namesake_rate: float) -> PeopleChunk:
    male = rng.random(n) < 0.47
    li = rng.choice(len(LAST_MALE), size=n, p=_W["last"])
    mfi = rng.choice(len(MALE_FIRST), size=n, p=_W["mf"])
    ffi = rng.choice(len(FEMALE_FIRST), size=n, p=_W["ff"])
    mmi = rng.choice(len(MALE_MIDDLE), size=n, p=_W["mm"])
    fmi = rng.choice(len(FEMALE_MIDDLE), size=n, p=_W["fm"])
    # deliberate namesakes: copy the full name (and sex) of an earlier person of the chunk
    ns = rng.random(n) < namesake_rate
    ns[0] = False
    src = (rng.random(n) * np.arange(n)).astype(np.int64)
    for arr in (male, li, mfi, ffi, mmi, fmi):
        arr[ns] = arr[src[ns]]
    birth_ord = rng.integers(_BIRTH_LO, _BIRTH_HI + 1, size=n)
    city = rng.choice(len(CITIES), size=n, p=_W["city"])
    street = rng.integers(0, len(STREETS), size=n)
    kind = rng.integers(0, len(STREET_KINDS), size=n)
    house = rng.integers(1, 120, size=n)
    flat = rng.integers(1, 300, size=n)
    has_flat = rng.random(n) < 0.8
    dom = rng.choice(len(EMAIL_DOMAINS), size=n, p=_EMAIL_W)
    old_dom = rng.choice(len(EMAIL_DOMAINS), size=n, p=_EMAIL_W)
    style = rng.integers(0, 4, size=n)
    idx = np.arange(first_index, first_index + n, dtype=np.int64)
    phone_n = _perm(idx, 12_345)
    old_phone_n = _perm(idx + 500_000_000, 12_345)
    pass_n = _perm(idx, 987_654_321, 10**10)
    mail_n = _perm(idx, 4242, 10_000)

    last, first, middle, birth, phone, old_phone = [], [], [], [], [], []
    email, old_email, passport, address = [], [], [], []
    for i in range(n):
        m = bool(male[i])
        ln = LAST_MALE[li[i]] if m else LAST_FEMALE[li[i]]
        fn = MALE_FIRST[mfi[i]] if m else FEMALE_FIRST[ffi[i]]
        mn = MALE_MIDDLE[mmi[i]] if m else FEMALE_MIDDLE[fmi[i]]
        last.append(ln)
        first.append(fn)
        middle.append(mn)
        b = date.fromordinal(int(birth_ord[i]))
        birth.append(b)
        phone.append(f"9{int(phone_n[i]):09d}")
        old_phone.append(f"9{int(old_phone_n[i]):09d}")
        p = int(pass_n[i])
        passport.append(f"{p // 1_000_000:04d} {p % 1_000_000:06d}")
        fl, ll = latin(fn).lower(), latin(ln).lower()
        yy = f"{b.year % 100:02d}"
        st = style[i]
        if st == 0:
            local = f"{fl[0]}.{ll}{yy}"
        elif st == 1:
            local = f"{fl}.{ll}"
        elif st == 2:
            local = f"{ll}.{fl[0]}{b.year}"
        else:
            local = f"{ll}_{fl}"
        num = int(mail_n[i])
        email.append(f"{local}{num}@{EMAIL_DOMAINS[dom[i]]}")
        old_email.append(f"{ll}{yy}{num % 97}@{EMAIL_DOMAINS[old_dom[i]]}")
        a = f"г. {CITIES[city[i]]}, {STREET_KINDS[kind[i]]} {STREETS[street[i]]}, д. {house[i]}"
        if has_flat[i]:
            a += f", кв. {flat[i]}"
        address.append(a)
    return PeopleChunk(
        first_index,
        male,
        last,
        first,
        middle,
        birth,
        phone,
        old_phone,
        email,
        old_email,
        passport,
        address,
        ns,
    )
