"""Measure the shipped person model's term frequencies again, on the data it was trained on.

The shipped model (assets/identity/models/person_model.json) says what it was trained on
(`consent_center.trained_on`: the generator's feeds for N clients with seed S). This script
generates those feeds again, stages them as the product does, prepares the person records and
saves their term frequencies into the model (assets/identity/term_frequencies.py), leaving the
trained weights as they are. `consent-center train-identity` measures them by itself; this is
for the artefact in the repository.

    python -m benchmarks.model_term_frequencies [--model PATH]

The generator has changed a little since the weights were trained (a few records more or
less for the same clients and seed): the frequencies record the records they were measured on
(`total`), and the script prints both counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import psycopg

from assets.identity import features, term_frequencies
from assets.identity.io import read_records
from assets.identity.training import DEFAULT_MODEL_PATH, META_KEY
from benchmarks.common import generate_feeds, scratch_database, stage_feeds
from benchmarks.identity_accuracy import training_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args()
    trained = training_data(args.model)
    if trained is None:
        raise SystemExit("the model does not say what it was trained on")
    clients, seed, trained_records = trained
    with tempfile.TemporaryDirectory(prefix="cc-model-tf-") as tmp:
        landing = Path(tmp) / "landing"
        generate_feeds(landing, clients=clients, seed=seed)
        with scratch_database() as url:
            stage_feeds(url, landing)
            with psycopg.connect(url, autocommit=True) as conn:
                records = read_records(conn)
    prepared = features.prepare(records)
    model = json.loads(args.model.read_text(encoding="utf-8"))
    columns = list(term_frequencies.tf_columns(model))
    model[META_KEY][term_frequencies.META_FIELD] = term_frequencies.measure(prepared, columns)
    args.model.write_text(json.dumps(model, indent=2, ensure_ascii=False), encoding="utf-8")
    saved = model[META_KEY][term_frequencies.META_FIELD]["counts"]
    print(
        json.dumps(
            {
                "records_measured": len(prepared),
                "records_trained_on": trained_records,
                "values_seen_twice_or_more": {c: len(v) for c, v in saved.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
