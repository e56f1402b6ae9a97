"""E.164 phone numbers for every distinct phone string in the raw feeds, via `phonenumbers`.

Phones arrive as "8 (916) 123-45-67", "+7 916 1234567", "9161234567"... Staging joins on a key
(the string with everything but digits and '+' removed), so `phonenumbers` runs once per distinct
new key, never per row, and never again for a key it has already seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

import phonenumbers
import psycopg
from psycopg import sql

from sources import SOURCES

DEFAULT_REGION = "RU"
PHONE_COLUMNS = {  # raw table -> its phone columns
    spec.table: "phone"
    for source in SOURCES.values()
    for spec in source.tables
    if "phone" in spec.column_names
}
KEY_SQL = "regexp_replace({col}, '[^0-9+]', '', 'g')"


def normalise(key: str) -> tuple[str, str | None, bool, str | None]:
    """(key, E.164 or None, valid?, number type) for one digits-and-plus key."""
    candidate = key
    # Russian habits: 8XXXXXXXXXX is the trunk-prefixed national form; ten digits lack the 8
    if candidate.startswith("8") and len(candidate) == 11:
        candidate = "+7" + candidate[1:]
    elif candidate.startswith("7") and len(candidate) == 11:
        candidate = "+" + candidate
    try:
        number = phonenumbers.parse(candidate, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return key, None, False, None
    valid = phonenumbers.is_valid_number(number)
    kind = phonenumbers.number_type(number)
    kind_name = next(
        (name for name, value in vars(phonenumbers.PhoneNumberType).items() if value == kind),
        None,
    )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return key, e164 if valid else None, valid, kind_name.lower() if kind_name else None


def _normalise_many(keys: list[str]) -> list[tuple[str, str | None, bool, str | None]]:
    return [normalise(key) for key in keys]


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def new_phone_keys(conn: psycopg.Connection) -> list[str]:
    union = sql.SQL(" union ").join(
        sql.SQL("select distinct {key} as phone_key from raw.{table} where {col} <> ''").format(
            key=sql.SQL(KEY_SQL).format(col=sql.Identifier(col)),
            table=sql.Identifier(table),
            col=sql.Identifier(col),
        )
        for table, col in PHONE_COLUMNS.items()
    )
    query = sql.SQL(
        "select phone_key from ({union}) as k where phone_key <> '' "
        "except select phone_key from raw.phone_numbers"
    ).format(union=union)
    return [row[0] for row in conn.execute(query)]


def refresh_phone_numbers(conn: psycopg.Connection, workers: int = 2) -> int:
    """Normalise every phone key not seen before; returns how many were added."""
    keys = new_phone_keys(conn)
    if not keys:
        return 0
    if len(keys) > 50_000 and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            batches = list(pool.map(_normalise_many, _chunks(keys, 20_000)))
    else:
        batches = [_normalise_many(keys)]
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(
            "copy raw.phone_numbers (phone_key, phone_e164, is_valid, number_type) from stdin"
        ) as copy,
    ):
        for batch in batches:
            for row in batch:
                copy.write_row(row)
    return len(keys)
