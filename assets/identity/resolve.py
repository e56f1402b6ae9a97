"""resolve(): records -> golden clients (xref), ambiguous pairs, timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import clusters, features, predict, term_frequencies
from .training import DEFAULT_MODEL_PATH, load_model_and_meta, model_fingerprint, scale_prior

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
    scores: PairScores  # every pair at or above the lower threshold, for the next run
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
    band = canonical_edges(band)
    l_key = _split_key(band["unique_id_l"]).add_suffix("_l")
    r_key = _split_key(band["unique_id_r"]).add_suffix("_r")
    ambiguous = pd.concat([l_key, r_key], axis=1)
    ambiguous["client_id_l"] = band["unique_id_l"].map(client_of).to_numpy()
    ambiguous["client_id_r"] = band["unique_id_r"].map(client_of).to_numpy()
    ambiguous["match_probability"] = band["match_probability"].to_numpy()
    ambiguous["same_client"] = ambiguous["client_id_l"] == ambiguous["client_id_r"]
    return ambiguous.reindex(columns=AMBIGUOUS_COLUMNS).reset_index(drop=True)


@dataclass
class PairScores:
    """Every pair scored at or above the lower threshold, for the record versions it covers.

    A pair's probability depends on the two records and the model alone (term frequencies and
    the prior come from the model, term_frequencies.py and training.scale_prior), so a score,
    once computed, holds for as long as neither record changes and the calibration (model,
    prior bucket, lower threshold) stays. `records` lists the record versions (unique_id,
    record_hash) whose pairs with every other listed version are in `pairs`: a run scores
    only the records not listed (new or changed), against each other and against the listed
    ones, and takes every other pair from here. That is how an incremental run publishes what
    one run over all records does, whatever the batching.
    """

    calibration: str
    records: pd.DataFrame  # unique_id, record_hash
    pairs: pd.DataFrame  # unique_id_l < unique_id_r, match_probability

    @classmethod
    def empty(cls, calibration: str = "") -> PairScores:
        return cls(
            calibration,
            pd.DataFrame(columns=["unique_id", "record_hash"]),
            pd.DataFrame(columns=predict.EDGE_COLUMNS),
        )


def canonical_edges(edges: pd.DataFrame) -> pd.DataFrame:
    """Each pair once, its smaller record key on the left, its best probability."""
    if edges.empty:
        return pd.DataFrame(columns=predict.EDGE_COLUMNS)
    left = edges["unique_id_l"].astype(str)
    right = edges["unique_id_r"].astype(str)
    swap = (left > right).to_numpy()
    out = pd.DataFrame(
        {
            "unique_id_l": left.where(~swap, right).to_numpy(),
            "unique_id_r": right.where(~swap, left).to_numpy(),
            "match_probability": edges["match_probability"].astype(float).to_numpy(),
        }
    )
    return (
        out.sort_values(["unique_id_l", "unique_id_r", "match_probability"], kind="stable")
        .drop_duplicates(["unique_id_l", "unique_id_r"], keep="last")
        .reset_index(drop=True)
    )


def calibration_of(model_path: Path | str, prior_bucket: int, lower: float) -> str:
    """What a saved pair score was computed under: the model file, the prior's size bucket
    and the lowest probability kept."""
    return f"model={model_fingerprint(model_path)};prior_bucket={prior_bucket};lower={lower!r}"


def resolve(
    records: pd.DataFrame,
    model_path: Path | str = DEFAULT_MODEL_PATH,
    existing: pd.DataFrame | None = None,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    *,
    scores: PairScores | None = None,
    threads: int = 2,
    keep_linker: bool = False,
) -> Resolution:
    """Resolve person records (input contract, see package docstring) into golden clients.

    scores: the pair scores of earlier runs (Resolution.scores). Given, and computed under
    this run's calibration, only the records they do not cover (new, or changed since) are
    scored; without them every pair is. Either way the clusters are the connected components
    of every pair at or above the upper threshold and of the deterministic links, over all
    records: the same records give the same clusters however many runs brought them.

    existing: the previous xref (source, source_record_id, client_id[, record_hash]), used to
    keep client ids stable (clusters.assign_client_ids): a changed record's old client counts
    half as much as an unchanged record's.
    """
    lower, upper = thresholds
    if not 0 < lower <= upper <= 1:
        raise ValueError("thresholds must satisfy 0 < lower <= upper <= 1")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    records = records.reset_index(drop=True)
    prepared = features.prepare(records)
    rhash = features.record_hash(records)
    current = pd.DataFrame({"unique_id": prepared["unique_id"], "record_hash": rhash.to_numpy()})
    t["features_s"] = time.perf_counter() - t0

    previous = None
    if existing is not None and len(existing):
        prev = existing.copy()
        prev["unique_id"] = features.record_key(prev["source"], prev["source_record_id"])
        unchanged = prev["unique_id"].isin(prepared["unique_id"])
        if "record_hash" in prev.columns:
            unchanged &= (
                prev["unique_id"]
                .map(current.set_index("unique_id")["record_hash"])
                .eq(prev["record_hash"])
            )
        previous = prev[["unique_id", "client_id"]].assign(
            weight=unchanged.fillna(False).astype(bool).to_numpy() * 0.5 + 0.5
        )

    t1 = time.perf_counter()
    model, meta = load_model_and_meta(model_path)
    prior_factor, bucket = scale_prior(model, meta.get("trained_records"), len(prepared))
    calibration = calibration_of(model_path, bucket, lower)
    new_mask = None
    kept = pd.DataFrame(columns=predict.EDGE_COLUMNS)
    if scores is not None and scores.calibration == calibration:
        covered = current.merge(
            scores.records, on=["unique_id", "record_hash"], how="left", indicator=True
        )["_merge"].eq("both")
        new_mask = ~covered.to_numpy()
        listed = prepared.loc[~new_mask, "unique_id"]
        pairs = scores.pairs
        kept = pairs[pairs["unique_id_l"].isin(listed) & pairs["unique_id_r"].isin(listed)]
        new_mask = pd.Series(new_mask, index=prepared.index)
    if keep_linker:
        model["retain_intermediate_calculation_columns"] = True
    scored = predict.score(
        prepared,
        model,
        new_mask=new_mask,
        threshold=lower,
        threads=threads,
        frequencies=meta.get(term_frequencies.META_FIELD),
    )
    fresh = canonical_edges(scored.edges)
    edges = canonical_edges(pd.concat([kept, fresh], ignore_index=True))
    t["predict_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    det = pd.concat(
        [features.contract_links(records), features.contact_links(prepared)], ignore_index=True
    ).drop_duplicates()
    det = det.assign(match_probability=1.0)
    strong = edges.loc[edges["match_probability"] >= upper, predict.EDGE_COLUMNS]
    graph_edges = pd.concat([strong, det], ignore_index=True)
    labels = clusters.components(prepared["unique_id"], graph_edges)
    cl = pd.DataFrame({"unique_id": prepared["unique_id"], "cluster": labels.to_numpy()})
    cl["client_id"] = clusters.assign_client_ids(cl, previous).to_numpy()
    t["cluster_s"] = time.perf_counter() - t2

    # match probability of a record: its best link inside its client
    cid = cl.set_index("unique_id")["client_id"]
    links = graph_edges[
        graph_edges["unique_id_l"].map(cid).to_numpy()
        == graph_edges["unique_id_r"].map(cid).to_numpy()
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
    band = pd.concat([band, raised], ignore_index=True)
    ambiguous = ambiguous_pairs(band, cid)
    t["total_s"] = time.perf_counter() - t0

    stats = {
        "records": len(prepared),
        "incremental": new_mask is not None,  # saved scores of this calibration were used
        "scored_records": int(new_mask.sum()) if new_mask is not None else len(prepared),
        "scored_pairs": len(fresh),
        "pairs_kept": len(kept),  # scored by an earlier run, both records unchanged since
        "merge_edges": len(strong),
        "deterministic_links": len(det),  # a quoted contract, or a shared contact + name
        "clients": int(xref["client_id"].nunique()),
        "ambiguous_pairs": len(ambiguous),
        "contact_possible_matches": len(raised),  # raised to the band by the contact rule
        "prior_factor": prior_factor,
    }
    return Resolution(
        xref=xref[XREF_COLUMNS],
        ambiguous=ambiguous,
        scores=PairScores(calibration, current, edges),
        timings=t,
        stats=stats,
        linker=scored.linker if keep_linker else None,
        predictions=scored.predictions if keep_linker else [],
        prepared=prepared.assign(client_id=cl["client_id"].to_numpy()) if keep_linker else None,
    )
