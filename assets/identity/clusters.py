"""Connected components over match edges and stable client ids.

Id rule (documented contract):
* A cluster keeps an existing client_id of its members: the id held by the most of its members
  in the previous xref (ties: the smallest id). When two clusters claim the same previous id
  (a split), the cluster holding more of that id's records wins (ties: the cluster whose
  earliest record key is smallest); the other cluster takes its next candidate or a new id.
* A cluster without a previous id gets ``C-`` + uuid5(namespace, earliest record key), where
  the record key is ``source|source_record_id`` and "earliest" is the smallest key. The same
  input gives the same ids on every run, with or without the previous xref.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

CLIENT_NAMESPACE = uuid.UUID("5d1f2c7e-0b1a-4c57-9a44-63a1f4a5c0de")


def components(node_ids: pd.Series, edges: pd.DataFrame) -> pd.Series:
    """Component label (int) for each node id; edges has unique_id_l / unique_id_r."""
    codes = pd.Index(node_ids.astype(str).unique())
    n = len(codes)
    if len(edges):
        left = codes.get_indexer(edges["unique_id_l"].astype(str))
        right = codes.get_indexer(edges["unique_id_r"].astype(str))
        ok = (left >= 0) & (right >= 0)
        left, right = left[ok], right[ok]
    else:
        left = right = np.array([], dtype=np.int64)
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return (
        pd.Series(labels, index=codes)
        .reindex(node_ids.astype(str).to_numpy())
        .set_axis(node_ids.index)
    )


def new_client_id(record_key: str) -> str:
    return "C-" + uuid.uuid5(CLIENT_NAMESPACE, record_key).hex[:20]


def assign_client_ids(clusters: pd.DataFrame, previous: pd.DataFrame | None) -> pd.Series:
    """clusters: unique_id, cluster; previous: unique_id, client_id[, weight]. Returns the
    client_id per row. `weight` (default 1) lets changed records count less than unchanged
    ones when clusters compete for a previous id."""
    first_key = clusters.groupby("cluster")["unique_id"].min()
    cluster_ids = pd.Series(first_key.map(new_client_id), index=first_key.index)
    if previous is not None and len(previous):
        prev = clusters.merge(previous, on="unique_id")
        if "weight" not in prev.columns:
            prev["weight"] = 1.0
        cand = prev.groupby(["cluster", "client_id"])["weight"].sum().rename("n").reset_index()
        cand["first_key"] = cand["cluster"].map(first_key)
        cand = cand.sort_values(
            ["n", "client_id", "first_key"], ascending=[False, True, True], kind="stable"
        )
        # each previous id goes to the cluster holding most of its records ...
        cand = cand.drop_duplicates("client_id", keep="first")
        # ... and each cluster keeps its best remaining candidate
        best = cand.drop_duplicates("cluster", keep="first").set_index("cluster")["client_id"]
        cluster_ids.loc[best.index] = best
    return clusters["cluster"].map(cluster_ids)
