"""Survivorship: the best-known fields of each golden client.

Rule, per field independently: take the value from the most trusted source
(crm > partner > web > helpdesk), then the most recently updated record, then the most
complete record (most non-null fields); a null never wins over a value.

Names are chosen on their matching form (lower case). When the records carry their original
spelling (`last_name_orig`, `first_name_orig`, `middle_name_orig`, as read from staging), the
golden record shows the chosen name as some record of the client wrote it, preferring mixed
case over all lower and all capitals ("Соколова" over "СОКОЛОВА"); a name known only from a
helpdesk letter's free text is title-cased. `updated_at` is the newest of the client's records.
"""

from __future__ import annotations

import pandas as pd

from . import features

SOURCE_TRUST = {"crm": 0, "partner": 1, "web": 2, "helpdesk": 3}
GOLDEN_FIELDS = ["last_name", "first_name", "middle_name", "birth_date", "phone", "email"]
NAME_FIELDS = ["last_name", "first_name", "middle_name"]


def _display_names(df: pd.DataFrame, chosen: pd.Series, name: str) -> pd.Series:
    """The original spelling of each client's chosen (matching-form) name.

    df: the client's records in priority order, with `name` (matching form) and `name_orig`.
    """
    orig = f"{name}_orig"
    cand = df.loc[df[orig].notna() & df[name].notna(), ["client_id", name, orig]]
    cand = cand.merge(chosen.rename("_chosen").reset_index(), on="client_id")
    cand = cand[cand[name] == cand["_chosen"]]
    text = cand[orig].astype(str)
    # 0: mixed case, 1: all lower, 2: all capitals; ties keep the priority order
    cand["_case"] = text.str.isupper().astype(int) * 2 + text.str.islower().astype(int)
    cand = cand.sort_values("_case", kind="stable").drop_duplicates("client_id")
    spelled = cand.set_index("client_id")[orig]
    fallback = chosen.where(chosen.isna(), chosen.astype("string").str.title())
    return spelled.reindex(chosen.index).fillna(fallback).astype("object")


def golden_fields(records: pd.DataFrame, xref: pd.DataFrame) -> pd.DataFrame:
    """client_id, last_name, first_name, middle_name, birth_date, phone, email,
    source_record_count (DESIGN section 6, golden_client)."""
    df = records.copy()
    for c in [
        "last_name",
        "first_name",
        "middle_name",
        "fio",
        "birth_date",
        "phone_e164",
        "email",
        "updated_at",
    ]:
        if c not in df.columns:
            df[c] = None
    # helpdesk letters carry only free text: use its parsed full names (not bare initials)
    fio = df["fio"].notna() & df["last_name"].isna() & df["first_name"].isna()
    if fio.any():
        parsed = features.parse_fio(df.loc[fio, "fio"])
        parsed = parsed.where(parsed.apply(lambda s: s.str.len() > 1), None)
        for c in ["last_name", "first_name", "middle_name"]:
            df.loc[fio, c] = parsed[c]
    df = df.rename(columns={"phone_e164": "phone"})
    df = df.merge(
        xref[["source", "source_record_id", "client_id"]],
        on=["source", "source_record_id"],
        how="inner",
    )
    df["_trust"] = df["source"].map(SOURCE_TRUST).fillna(9)
    df["_updated"] = pd.to_datetime(df["updated_at"], errors="coerce", utc=True)
    df["_complete"] = df[GOLDEN_FIELDS].notna().sum(axis=1)
    df = df.sort_values(
        ["client_id", "_trust", "_updated", "_complete"],
        ascending=[True, True, False, False],
        na_position="last",
        kind="stable",
    )
    g = df.groupby("client_id", sort=True)
    out = g[GOLDEN_FIELDS].first()  # first non-null per field, in priority order
    out["source_record_count"] = g.size()
    out["updated_at"] = g["_updated"].max()
    for name in NAME_FIELDS:
        if f"{name}_orig" in df.columns:
            out[name] = _display_names(df, out[name], name)
    out = out.reset_index()
    out["birth_date"] = pd.to_datetime(out["birth_date"], errors="coerce").dt.date
    return out
