"""Survivorship: the best-known fields of each golden client.

Rule, per field independently: take the value from the most trusted source
(crm > partner > web > helpdesk), then the most recently updated record, then the most
complete record (most non-null fields); a null never wins over a value.
"""

from __future__ import annotations

import pandas as pd

from . import features

SOURCE_TRUST = {"crm": 0, "partner": 1, "web": 2, "helpdesk": 3}
GOLDEN_FIELDS = ["last_name", "first_name", "middle_name", "birth_date", "phone", "email"]


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
    out = out.reset_index()
    out["birth_date"] = pd.to_datetime(out["birth_date"], errors="coerce").dt.date
    return out
