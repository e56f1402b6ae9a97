"""Training on unlabelled data: prior from deterministic rules, u by random sampling, m by EM.

Run separately from scheduled resolution (splink's production advice): the trained model is
saved as a JSON artefact (assets/identity/models/person_model.json) and reused by `resolve`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
from splink import Linker

from . import features, term_frequencies
from . import settings as model_settings
from .predict import make_db_api

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "person_model.json"

#: our own key in the model JSON (splink ignores nothing: it is removed before loading)
META_KEY = "consent_center"


def make_linker(prepared: pd.DataFrame, model) -> Linker:
    """A DuckDB-backed linker over a prepared frame (in-process DuckDB)."""
    db_api = make_db_api()
    sdf = db_api.register(prepared, table_name="person_records")
    return Linker(sdf, model)


def train(
    records: pd.DataFrame,
    out_path: Path | str = DEFAULT_MODEL_PATH,
    *,
    profile: str = "ru",
    u_max_pairs: float = 2e6,
    em_max_pairs: float | None = 2e6,
    prior_recall: float = 0.8,
    seed: int = 42,
    m_floor: float = 0.005,
) -> dict:
    """Train the person model on unlabelled `records` (input contract) and save it as JSON.

    Returns the saved model dictionary. The file is splink settings JSON plus one key of our
    own, `consent_center`: the profile, the number of records trained on (which `resolve` uses
    to rescale the prior to the size of the data it scores) and the term frequencies measured
    on them (term_frequencies.py); `load_model` strips it.
    """
    prepared = features.prepare(records)
    present = {c for c in prepared.columns if prepared[c].notna().any()}
    linker = make_linker(prepared, model_settings.settings(profile, present))
    linker.training.estimate_probability_two_random_records_match(
        model_settings.prior_rules(profile), recall=prior_recall
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=seed)
    for rule in model_settings.em_rules(profile):
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True, max_pairs=em_max_pairs
            )
        except Exception as exc:  # a rule with no pairs in this data set: skip it
            log.warning("EM session skipped: %s", exc)
    model = regularise(linker.misc.save_model_to_json(), m_floor=m_floor)
    model[META_KEY] = {
        "profile": profile,
        "trained_records": len(prepared),
        term_frequencies.META_FIELD: term_frequencies.measure(
            prepared, list(term_frequencies.tf_columns(model))
        ),
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model, indent=2, ensure_ascii=False), encoding="utf-8")
    log.info("person model (%s, %d records) saved to %s", profile, len(prepared), out)
    return model


def regularise(model: dict, m_floor: float = 0.005) -> dict:
    """Fill untrained u values, floor every non-null level's m probability, renormalise.

    EM on blocked pairs can drive m to 0 for a level rarely seen among matches (a different
    address, a different passport), which gives a weight of -60 bits that no other evidence
    can outweigh; a moved or re-documented client must still be matchable.
    """
    for comparison in model.get("comparisons", []):
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        # a level never seen in the random sample: ten times as common as the level above it
        previous_u = None
        for lv in levels:
            if lv.get("u_probability") is None and previous_u is not None:
                lv["u_probability"] = min(previous_u * 10, 0.5)
            previous_u = lv.get("u_probability") or previous_u
        free = [lv for lv in levels if not lv.get("fix_m_probability")]
        for lv in free:
            lv["m_probability"] = max(float(lv.get("m_probability") or m_floor), m_floor)
        fixed_total = sum(lv["m_probability"] for lv in levels if lv.get("fix_m_probability"))
        total = sum(lv["m_probability"] for lv in free)
        for lv in free:
            lv["m_probability"] = lv["m_probability"] / total * (1 - fixed_total)
    return model


def model_fingerprint(model_path: Path | str) -> str:
    """16 hex digits of the model file's sha256: which model a run or a saved score used."""
    return hashlib.sha256(Path(model_path).read_bytes()).hexdigest()[:16]


def load_model(model_path: Path | str) -> dict:
    """The model dictionary without our own metadata (splink rejects unknown keys)."""
    model, _ = load_model_and_meta(model_path)
    return model


def load_model_and_meta(model_path: Path | str) -> tuple[dict, dict]:
    """(splink settings, our metadata: profile, trained_records; {} for an old artefact)."""
    model = json.loads(Path(model_path).read_text(encoding="utf-8"))
    meta = model.pop(META_KEY, None) or {}
    return model, meta


def prior_bucket(records: int) -> int:
    """The power of two at or above `records`: the data size the prior is scaled to."""
    return 1 << max(int(records) - 1, 0).bit_length()


def scale_prior(model: dict, trained_records: int | None, records: int) -> tuple[float, int]:
    """Rescale the prior (probability_two_random_records_match) to the data size; returns the
    factor applied and the size bucket it was scaled to (0: not scaled).

    With a fixed share of duplicates per person, matching pairs grow with n and all pairs with
    n^2, so the prior falls as 1/n: prior x trained_records / n. The size is taken by powers of
    two (prior_bucket), so that the prior, and with it every pair's score, stays put while the
    data grows within a bucket: saved pair scores (resolve.PairScores) stay valid, and a
    bucket crossed re-scores every pair once. Only ever lowered: on a frame smaller than the
    training set (a test, a helpdesk day) the trained prior stays, so a handful of records
    never merges on weaker evidence than the model was trained with.
    """
    if not trained_records or records <= trained_records:
        return 1.0, 0
    bucket = prior_bucket(records)
    factor = trained_records / bucket
    model["probability_two_random_records_match"] = (
        float(model["probability_two_random_records_match"]) * factor
    )
    return factor, bucket
