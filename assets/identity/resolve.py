"""resolve(): records -> golden clients (xref), ambiguous pairs, timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import clusters, features, predict
from .training import DEFAULT_MODEL_PATH, load_model_and_meta, scale_prior

#: (lower, upper): pairs >= upper merge; lower <= p < upper go to review as ambiguous_identity
DEFAULT_THRESHOLDS = (0.5, 0.99)

XREF_COLUMNS = ["source", "source_record_id", "client_id", "match_probability", "record_hash"]
AMBIGUOUS_COLUMNS = [
    "source_l",
    "source_record_id_l",
    "client_id_l",
    "source_r",
    "source_record_id_r",
    "client_id_r",
    "match_probability",
    "same_client",
]


@dataclass
class Resolution:
    xref: pd.DataFrame  # source, source_record_id, client_id, match_probability, record_hash
    ambiguous: pd.DataFrame  # AMBIGUOUS_COLUMNS: pairs between the thresholds, for review
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)  # counts, and prior_factor
    linker: object | None = None  # splink Linker, for write_charts
    predictions: list = field(default_factory=list)  # splink predictions, for write_charts
    prepared: pd.DataFrame | None = None


def _split_key(uid: pd.Series) -> pd.DataFrame:
    parts = uid.astype("object").str.extract(r"^([^|]*)\|(.*)$")
    return pd.DataFrame(
        {
            "source": parts[0].to_numpy(dtype=object),
            "source_record_id": parts[1].to_numpy(dtype=object),
        }
    )


def pair_edges(pairs: pd.DataFrame) -> pd.DataFrame:
    """Ambiguous pairs (AMBIGUOUS_COLUMNS) back as edges: unique_id_l, unique_id_r, p."""
    return pd.DataFrame(
        {
            "unique_id_l": features.record_key(pairs["source_l"], pairs["source_record_id_l"]),
            "unique_id_r": features.record_key(pairs["source_r"], pairs["source_record_id_r"]),
            "match_probability": pairs["match_probability"].astype(float).to_numpy(),
        }
    )


def _same_client(pairs: pd.DataFrame, client_of: pd.Series):
    """Per pair (unique_id_l, unique_id_r): are both records in one client (bool array)?"""
    return (
        pairs["unique_id_l"].map(client_of).to_numpy()
        == pairs["unique_id_r"].map(client_of).to_numpy()
    )


def ambiguous_pairs(band: pd.DataFrame, client_of: pd.Series) -> pd.DataFrame:
    """Edges between the thresholds -> AMBIGUOUS_COLUMNS, in one canonical form.

    Each pair once, its smaller record key on the left (a full run's predict() and an
    incremental run's predict_between() orient pairs differently), its best probability,
    the client of each side by `client_of` (unique_id -> client_id), rows sorted: the same
    pairs give the same table whichever runs scored them.
    """
    if band.empty:
        return pd.DataFrame(columns=AMBIGUOUS_COLUMNS)
    left = band["unique_id_l"].astype(str)
    right = band["unique_id_r"].astype(str)
    swap = (left > right).to_numpy()
    band = pd.DataFrame(
        {
            "unique_id_l": left.where(~swap, right).to_numpy(),
            "unique_id_r": right.where(~swap, left).to_numpy(),
            "match_probability": band["match_probability"].astype(float).to_numpy(),
        }
    )
    band = (
        band.sort_values(["unique_id_l", "unique_id_r", "match_probability"], kind="stable")
        .drop_duplicates(["unique_id_l", "unique_id_r"], keep="last")
        .reset_index(drop=True)
    )
    l_key = _split_key(band["unique_id_l"]).add_suffix("_l")
    r_key = _split_key(band["unique_id_r"]).add_suffix("_r")
    ambiguous = pd.concat([l_key, r_key], axis=1)
    ambiguous["client_id_l"] = band["unique_id_l"].map(client_of).to_numpy()
    ambiguous["client_id_r"] = band["unique_id_r"].map(client_of).to_numpy()
    ambiguous["match_probability"] = band["match_probability"].to_numpy()
    ambiguous["same_client"] = ambiguous["client_id_l"] == ambiguous["client_id_r"]
    return ambiguous.reindex(columns=AMBIGUOUS_COLUMNS).reset_index(drop=True)


def resolve(
    records: pd.DataFrame,
    model_path: Path | str = DEFAULT_MODEL_PATH,
    existing: pd.DataFrame | None = None,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    *,
    incremental: bool = True,
    threads: int = 2,
    keep_linker: bool = False,
    previous_pairs: pd.DataFrame | None = None,
) -> Resolution:
    """Resolve person records (input contract, see package docstring) into golden clients.

    existing: the previous xref (source, source_record_id, client_id[, record_hash,
    match_probability]). With `incremental=True` only records that are new (absent from
    `existing`) or changed (record_hash differs, when `existing` carries one) are scored,
    against each other and against all other records; unchanged records keep their client
    unless a new record bridges two clients (then they merge under the surviving id, see
    clusters.assign_client_ids). With `incremental=False` everything is re-clustered and
    `existing` is used only to keep ids stable.

    previous_pairs: the previous run's ambiguous pairs (AMBIGUOUS_COLUMNS). An incremental run
    scores only pairs that involve a new or changed record, so the pairs between two unchanged
    records are the ones scored before: they are kept (with their probability, and with the
    client ids and same_client of this run's clusters), and a pair that involves a new or
    changed record is replaced by its new score. Without them, a run with nothing new would
    publish no ambiguous pair at all, and every revocation honoured across a possible match
    (consent_event, `possible_match_revocation_honoured`) would be lost. A full run scores
    every pair again and ignores them.
    """
    lower, upper = thresholds
    if not 0 < lower <= upper <= 1:
        raise ValueError("thresholds must satisfy 0 < lower <= upper <= 1")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    records = records.reset_index(drop=True)
    prepared = features.prepare(records)
    rhash = features.record_hash(records)
    t["features_s"] = time.perf_counter() - t0

    previous = None
    new_mask = None
    if existing is not None and len(existing):
        prev = existing.copy()
        prev["unique_id"] = features.record_key(prev["source"], prev["source_record_id"])
        previous = prev[["unique_id", "client_id"]]
        if incremental:
            known = prepared["unique_id"].isin(prev["unique_id"])
            if "record_hash" in prev.columns:
                old_hash = prepared["unique_id"].map(prev.set_index("unique_id")["record_hash"])
                known &= old_hash.eq(rhash).fillna(False).astype(bool)
            new_mask = ~known
            # a changed record's old client counts less than its unchanged records' clients
            previous = previous.assign(
                weight=previous["unique_id"].isin(prepared.loc[known, "unique_id"]) * 0.5 + 0.5
            )

    t1 = time.perf_counter()
    model, meta = load_model_and_meta(model_path)
    prior_factor = scale_prior(model, meta.get("trained_records"), len(prepared))
    if keep_linker:
        model["retain_intermediate_calculation_columns"] = True
    scored = predict.score(prepared, model, new_mask=new_mask, threshold=lower, threads=threads)
    edges = scored.edges
    t["predict_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    det = pd.concat(
        [features.contract_links(records), features.contact_links(prepared)], ignore_index=True
    ).drop_duplicates()
    if new_mask is not None:
        new_ids = set(prepared.loc[new_mask, "unique_id"])
        det = det[det["unique_id_l"].isin(new_ids) | det["unique_id_r"].isin(new_ids)]
    det = det.assign(match_probability=1.0)
    strong = edges.loc[edges["match_probability"] >= upper, predict.EDGE_COLUMNS]
    graph = [strong, det]
    if new_mask is not None:
        # unchanged records stay together with their previous client: a star per client
        old = prepared.loc[~new_mask, ["unique_id"]].merge(
            previous[["unique_id", "client_id"]], on="unique_id"
        )
        hub = old.groupby("client_id")["unique_id"].transform("min")
        graph.append(pd.DataFrame({"unique_id_l": old["unique_id"], "unique_id_r": hub}))
    graph_edges = pd.concat(graph, ignore_index=True)
    labels = clusters.components(prepared["unique_id"], graph_edges)
    cl = pd.DataFrame({"unique_id": prepared["unique_id"], "cluster": labels.to_numpy()})
    cl["client_id"] = clusters.assign_client_ids(cl, previous).to_numpy()
    t["cluster_s"] = time.perf_counter() - t2

    # match probability of a record: its best link inside its client
    cid = cl.set_index("unique_id")["client_id"]
    links = pd.concat([strong, det], ignore_index=True)
    links = links[
        links["unique_id_l"].map(cid).to_numpy() == links["unique_id_r"].map(cid).to_numpy()
    ]
    best = (
        pd.concat(
            [
                links[["unique_id_l", "match_probability"]].set_axis(["unique_id", "p"], axis=1),
                links[["unique_id_r", "match_probability"]].set_axis(["unique_id", "p"], axis=1),
            ]
        )
        .groupby("unique_id")["p"]
        .max()
    )
    prob = cl["unique_id"].map(best)
    if new_mask is not None and "match_probability" in existing.columns:
        prev_p = prev.set_index("unique_id")["match_probability"]
        prob = prob.fillna(cl["unique_id"].map(prev_p))
    xref = pd.concat([_split_key(cl["unique_id"]), cl[["client_id"]]], axis=1)
    xref["match_probability"] = prob.fillna(1.0).astype(float).to_numpy()
    xref["record_hash"] = rhash.to_numpy()
    xref = xref.sort_values(["source", "source_record_id"], ignore_index=True)

    band = edges.loc[
        (edges["match_probability"] >= lower) & (edges["match_probability"] < upper),
        predict.EDGE_COLUMNS,
    ]
    # a shared contact and first name with a surname one typo away is never kept apart
    # silently: below the band, such a pair is raised to its floor (a possible match). The
    # rule looks at the two records alone, so every run applies it to all of them (one join)
    # and keeps the pairs this run's clusters left apart.
    possible = features.contact_possible_matches(prepared)
    raised = possible[~_same_client(possible, cid)].assign(match_probability=float(lower))
    kept_pairs = 0
    if new_mask is not None and previous_pairs is not None and len(previous_pairs):
        unchanged = prepared.loc[~new_mask, "unique_id"]
        old_band = pair_edges(previous_pairs)
        old_band = old_band[
            old_band["unique_id_l"].isin(unchanged) & old_band["unique_id_r"].isin(unchanged)
        ]
        # a pair the contact rule raised (at the floor) whose records have joined one client
        # since is no longer a possible match: it goes, as a full run would never raise it
        rule_pair = old_band.set_index(["unique_id_l", "unique_id_r"]).index.isin(
            possible.set_index(["unique_id_l", "unique_id_r"]).index
        )
        at_floor = old_band["match_probability"].to_numpy() == float(lower)
        old_band = old_band[~(rule_pair & _same_client(old_band, cid) & at_floor)]
        kept_pairs = len(old_band)
        band = pd.concat([old_band, band], ignore_index=True)
    band = pd.concat([band, raised], ignore_index=True)
    ambiguous = ambiguous_pairs(band, cid)
    t["total_s"] = time.perf_counter() - t0

    stats = {
        "records": len(prepared),
        "scored_records": int(new_mask.sum()) if new_mask is not None else len(prepared),
        "scored_pairs": len(edges),
        "merge_edges": len(strong),
        "deterministic_links": len(det),  # a quoted contract, or a shared contact + name
        "clients": int(xref["client_id"].nunique()),
        "ambiguous_pairs": len(ambiguous),
        "contact_possible_matches": len(raised),  # raised to the band by the contact rule
        "ambiguous_pairs_kept": kept_pairs,  # scored by an earlier run, both records unchanged
        "prior_factor": prior_factor,
    }
    return Resolution(
        xref=xref[XREF_COLUMNS],
        ambiguous=ambiguous,
        timings=t,
        stats=stats,
        linker=scored.linker if keep_linker else None,
        predictions=scored.predictions if keep_linker else [],
        prepared=prepared.assign(client_id=cl["client_id"].to_numpy()) if keep_linker else None,
    )
