"""Scoring candidate pairs with the trained model (splink on in-process DuckDB).

Full run: `predict()` over all records (term frequencies derived from the records).
Incremental run: only new or changed records are compared, within themselves
(`predict_within`) and against the already-resolved records (`predict_between`); term
frequencies are computed once over ALL records and registered, so weights do not depend on
the size of the increment.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd
from splink import DuckDBAPI, Linker

EDGE_COLUMNS = ["unique_id_l", "unique_id_r", "match_probability"]


def make_db_api(threads: int = 2, memory_limit: str | None = None) -> DuckDBAPI:
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    return DuckDBAPI(con)


#: pseudo-count of the term-frequency prior (records); see tf_table
TF_PRIOR_RECORDS = 10_000


def tf_columns(model: dict) -> dict[str, float]:
    """tf column -> u probability of its exact level (the average term frequency)."""
    cols: dict[str, float] = {}
    for comparison in model.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            col = level.get("tf_adjustment_column")
            if col and col not in cols:
                cols[col] = float(level.get("u_probability") or 0.0)
    return cols


def tf_table(prepared: pd.DataFrame, col: str, prior_u: float = 0.0) -> pd.DataFrame:
    """Term frequencies of a column, smoothed towards the model's average.

    splink's own term frequency is count(value) / count(non-null values); on a small batch
    (a test, a helpdesk day) that says "Соколова is 20% of all surnames" and wipes out the
    evidence of an exact match. So the frequency is shrunk towards the trained u of the exact
    level with a prior of TF_PRIOR_RECORDS records: (count + k*u) / (total + k). At millions
    of records the prior is negligible.
    """
    counts = prepared[col].dropna().value_counts()
    total = counts.sum()
    k = TF_PRIOR_RECORDS if prior_u > 0 else 0
    tf = (counts.to_numpy() + k * prior_u) / (total + k)
    return pd.DataFrame({col: counts.index.astype(object), f"tf_{col}": tf})


@dataclass
class Scored:
    edges: pd.DataFrame  # unique_id_l, unique_id_r, match_probability (+ sources)
    linker: Linker
    predictions: list  # SplinkDataFrames (for charts)


def _to_edges(sdf) -> pd.DataFrame:
    df = sdf.as_pandas_dataframe()
    keep = [c for c in [*EDGE_COLUMNS, "match_weight"] if c in df.columns]
    return df[keep]


def score(
    prepared: pd.DataFrame,
    model: dict,
    *,
    new_mask: pd.Series | None = None,
    threshold: float = 0.5,
    threads: int = 2,
) -> Scored:
    """Scored pairs at or above `threshold`.

    new_mask: None for a full run; otherwise True for records to (re)match. Pairs are then
    new x new and new x old only.
    """
    db_api = make_db_api(threads)
    sdf_all = db_api.register(prepared, table_name="person_records")
    linker = Linker(sdf_all, model)
    for col, prior_u in tf_columns(model).items():
        tf_sdf = db_api.register(tf_table(prepared, col, prior_u), table_name=f"tf_lookup_{col}")
        linker.table_management.register_term_frequency_lookup(tf_sdf, col)
    if new_mask is None:
        pred = linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")
        return Scored(_to_edges(pred), linker, [pred])

    new = prepared[new_mask.to_numpy()]
    old = prepared[~new_mask.to_numpy()]
    parts, preds = [], []
    if len(new) > 1:
        sdf_new = db_api.register(new, table_name="person_records_new")
        p = linker.inference.predict_within(
            sdf_new, threshold_match_probability=threshold, warning_mode="never"
        )
        parts.append(_to_edges(p))
        preds.append(p)
    if len(new) and len(old):
        sdf_new_b = db_api.register(new, table_name="person_records_new_b")
        sdf_old = db_api.register(old, table_name="person_records_old")
        p = linker.inference.predict_between(
            sdf_new_b, sdf_old, threshold_match_probability=threshold, warning_mode="never"
        )
        parts.append(_to_edges(p))
        preds.append(p)
    edges = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[*EDGE_COLUMNS, "match_weight"])
    )
    return Scored(edges, linker, preds)
