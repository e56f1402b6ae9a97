"""Pairwise precision / recall / F1 of predicted clusters against true clusters.

Counted set-based per (predicted, true) cell: pairs in a cell are true positives, pairs within
a predicted cluster are predicted matches, pairs within a true cluster are true matches. No
pair is ever enumerated.
"""

from __future__ import annotations

import pandas as pd


def _pairs(counts: pd.Series) -> int:
    c = counts.astype("int64")
    return int((c * (c - 1) // 2).sum())


def pairwise_scores(
    xref: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    truth_column: str = "person_id",
    keys: tuple[str, ...] = ("source", "source_record_id"),
) -> dict[str, float | int]:
    """xref: keys + client_id; truth: keys + truth_column. Only records in both count."""
    k = list(keys)
    df = xref[[*k, "client_id"]].merge(truth[[*k, truth_column]], on=k, how="inner")
    tp = _pairs(df.groupby(["client_id", truth_column]).size())
    pred = _pairs(df.groupby("client_id").size())
    true = _pairs(df.groupby(truth_column).size())
    fp, fn = pred - tp, true - tp
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "records": len(df),
    }
