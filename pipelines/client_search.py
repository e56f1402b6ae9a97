"""Client search among namesakes (DESIGN section 10, `GET /v1/clients/search`): which golden
clients could this person be, field by field, scored by the identity model itself.

A DPO (or the call centre's supervisor) has a letter or a caller: a surname, a birth date, a
phone. The search

1. refuses questions that would list hundreds of namesakes: at least two fields, one of them
   not a name;
2. finds candidate records in the staged person records (the identity input, assets/identity/io)
   that share a non-name field with the question (phone, e-mail, passport, birth date), or the
   surname with its birth date;
3. scores the question against every candidate with the installation's splink model
   (`Linker.inference.score_pairs`, the model's comparisons and saved term frequencies, its
   prior scaled to the installation's size): the same evidence identity resolution weighs,
   never a second matcher;
4. keeps each client's best record and answers at most 20 clients, best first, with whether
   each given field `agrees`, `differs` or is `missing` on that record.

The question's values go to PostgreSQL as parameters and to DuckDB in memory; nothing of them
is logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psycopg

from pipelines.answers import AnswerError
from pipelines.publication import one_publication, relation_exists
from pipelines.settings import Settings

MAX_CANDIDATES = 20
#: more candidate records than this and the question is too vague to score them all
MAX_RECORDS = 2000
NAME_FIELDS = ("last_name", "first_name", "middle_name")
OTHER_FIELDS = ("birth_date", "phone", "email", "passport")
FIELDS = (*NAME_FIELDS, *OTHER_FIELDS)
#: the model's column for each field of the question (assets/identity/features.prepare)
MODEL_COLUMN = {
    "last_name": "ln",
    "first_name": "fn",
    "middle_name": "mn",
    "birth_date": "birth_date",
    "phone": "phone",
    "email": "email",
    "passport": "passport",
}


@dataclass(frozen=True)
class Question:
    last_name: str | None = None
    first_name: str | None = None
    middle_name: str | None = None
    birth_date: str | None = None
    phone: str | None = None
    email: str | None = None
    passport: str | None = None

    def given(self) -> list[str]:
        return [f for f in FIELDS if (getattr(self, f) or "").strip()]


def check(question: Question) -> None:
    given = question.given()
    if len(given) < 2 or not any(f in OTHER_FIELDS for f in given):
        raise AnswerError(
            "give at least two fields, one of them not a name "
            "(birth_date, phone, email or passport): a surname alone lists its namesakes"
        )


def _phone_e164(text: str | None) -> str | None:
    """E.164 as staging stores it (sources/phones.py: phonenumbers, Russia by default)."""
    import re

    from sources.phones import normalise

    key = re.sub(r"[^0-9+]", "", text or "")
    return normalise(key)[1] if key else None


def _norm(text: str | None) -> str | None:
    """A name's matching form as staging writes it (`<name>_norm`: lower-case, ё -> е,
    whitespace collapsed)."""
    if not text or not text.strip():
        return None
    return " ".join(text.lower().replace("ё", "е").split())


def _question_record(question: Question) -> dict:
    """The question as one record of the identity input contract."""
    return {
        "source": "search",
        "source_record_id": "question",
        "last_name": _norm(question.last_name),
        "first_name": _norm(question.first_name),
        "middle_name": _norm(question.middle_name),
        "fio": None,
        "birth_date": (question.birth_date or "").strip() or None,
        "phone_e164": _phone_e164(question.phone),
        "email": (question.email or "").strip().lower() or None,
        "passport_digits": "".join(ch for ch in (question.passport or "") if ch.isdigit()) or None,
        "address": None,
        "contract_numbers": [],
        "updated_at": None,
    }


def _candidates(conn: psycopg.Connection, record: dict) -> pd.DataFrame:
    """The staged person records that share a non-name field with the question, or its surname
    and birth date, newest version of each (the identity input's own query)."""
    from assets.identity.io import RECORD_COLUMNS, RECORDS_SQL

    conditions, params = [], {}
    for column, key in (("phone_e164", "phone"), ("email", "email"),
                        ("passport_digits", "passport")):  # fmt: skip
        if record[column]:
            conditions.append(f"r.{column} = %({key})s")
            params[key] = record[column]
    if record["birth_date"]:
        params["bd"] = record["birth_date"]
        if record["last_name"]:
            params["ln"] = record["last_name"]
            conditions.append(
                "(r.birth_date = %(bd)s and (r.last_name = %(ln)s or r.fio like %(ln_prefix)s))"
            )
            params["ln_prefix"] = record["last_name"] + "%"
        else:
            conditions.append("r.birth_date = %(bd)s")
    if not conditions:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    names = ", ".join(RECORD_COLUMNS)
    query = (
        f"select * from ({RECORDS_SQL}) as r ({names}) where "
        + " or ".join(conditions)
        + f" limit {MAX_RECORDS + 1}"
    )
    with conn.cursor() as cur:
        rows = cur.execute(query, params).fetchall()
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    frame["contract_numbers"] = [[] for _ in range(len(frame))]
    return frame


def _model(settings: Settings) -> tuple[dict, dict]:
    from assets.identity.assets import active_model_path
    from assets.identity.training import load_model_and_meta

    return load_model_and_meta(active_model_path(settings))


def _agreement(question: pd.Series, candidate: pd.Series, field: str) -> str:
    column = MODEL_COLUMN[field]
    mine, theirs = question[column], candidate[column]
    if theirs is None or (isinstance(theirs, float) and pd.isna(theirs)):
        return "missing"
    return "agrees" if mine == theirs else "differs"


def search(conn: psycopg.Connection, settings: Settings, question: Question) -> list[dict]:
    """At most 20 candidate clients, best first (AnswerError: too vague a question)."""
    check(question)
    from assets.identity import features, predict, term_frequencies
    from assets.identity.training import scale_prior

    record = _question_record(question)
    with one_publication(conn):
        if not relation_exists(conn, "consent", "client_xref"):
            return []
        candidates = _candidates(conn, record)
        if len(candidates) > MAX_RECORDS:
            raise AnswerError(
                f"more than {MAX_RECORDS} records share these fields: add a field to narrow it"
            )
        if candidates.empty:
            return []
        keys = list(zip(candidates["source"], candidates["source_record_id"], strict=True))
        clients = dict(
            ((s, r), c)
            for s, r, c in conn.execute(
                "select source, source_record_id, client_id from consent.client_xref where "
                "(source, source_record_id) in (select * from unnest(%s::text[], %s::text[]))",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
        )
        (records_total,) = conn.execute("select count(*) from consent.client_xref").fetchone()
    inputs = pd.concat(
        [pd.DataFrame([record]), candidates.drop(columns=_extra(candidates))], ignore_index=True
    )
    prepared = features.prepare(inputs)
    model, meta = _model(settings)
    scale_prior(model, meta.get("trained_records"), int(records_total))
    model["retain_matching_columns"] = True
    db_api = predict.make_db_api(threads=1)
    linker_input = db_api.register(prepared, table_name="search_records")
    from splink import Linker

    linker = Linker(linker_input, model)
    frequencies = meta.get(term_frequencies.META_FIELD)
    for col, prior_u in term_frequencies.tf_columns(model).items():
        table = term_frequencies.lookup(prepared, col, prior_u, frequencies)
        linker.table_management.register_term_frequency_lookup(
            db_api.register(table, table_name=f"search_tf_{col}"), col
        )
    asked = prepared.iloc[[0]]
    others = prepared.iloc[1:]
    scored = linker.inference.score_pairs(
        db_api.register(asked, table_name="search_question"),
        db_api.register(others, table_name="search_candidates"),
    ).as_pandas_dataframe()
    scored = scored[["unique_id_r", "match_probability", "match_weight"]]
    by_id = others.set_index("unique_id")
    best: dict[str, dict] = {}
    question_row = asked.iloc[0]
    given = question.given()
    for uid, probability, weight in scored.itertuples(index=False):
        candidate = by_id.loc[uid]
        client = clients.get((candidate["source"], candidate["source_record_id"]))
        if client is None:
            continue
        entry = best.get(client)
        if entry is not None and entry["score"] >= probability:
            continue
        best[client] = {
            "client_id": client,
            "score": round(float(probability), 6),
            "match_weight": round(float(weight), 3),
            "best_record": {
                "source": candidate["source"],
                "source_record_id": candidate["source_record_id"],
            },
            "fields": {f: _agreement(question_row, candidate, f) for f in given},
        }
    ranked = sorted(best.values(), key=lambda c: (-c["score"], c["client_id"]))
    return ranked[:MAX_CANDIDATES]


def _extra(frame: pd.DataFrame) -> list[str]:
    """Columns of the identity input query that are not the engine's input."""
    from assets.identity.features import EXTRA_COLUMNS, INPUT_COLUMNS

    keep = set(INPUT_COLUMNS) | set(EXTRA_COLUMNS)
    return [c for c in frame.columns if c not in keep]
