"""Scoring candidate pairs with the trained model (splink on in-process DuckDB).

Full run: `predict()` over all records. Incremental run: only new or changed records are
compared, within themselves (`predict_within`) and against the already-resolved records
(`predict_between`). Either way the term frequencies come from the model
(term_frequencies.py), never from the records scored, so a pair's probability is a function
of the two records and the model alone: whichever run scores a pair gives it the same score.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd
from splink import DuckDBAPI, Linker

from . import term_frequencies

EDGE_COLUMNS = ["unique_id_l", "unique_id_r", "match_probability"]


def make_db_api(threads: int = 2, memory_limit: str | None = None) -> DuckDBAPI:
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    return DuckDBAPI(con)


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
    frequencies: dict | None = None,
) -> Scored:
    """Scored pairs at or above `threshold`.

    new_mask: None for a full run; otherwise True for records to (re)match. Pairs are then
    new x new and new x old only. frequencies: the model's saved term frequencies.
    """
    db_api = make_db_api(threads)
    sdf_all = db_api.register(prepared, table_name="person_records")
    linker = Linker(sdf_all, model)
    for col, prior_u in term_frequencies.tf_columns(model).items():
        table = term_frequencies.lookup(prepared, col, prior_u, frequencies)
        tf_sdf = db_api.register(table, table_name=f"tf_lookup_{col}")
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
