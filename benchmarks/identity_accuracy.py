"""Identity resolution accuracy and speed of the shipped model, on people it was not trained on.

    python -m benchmarks.identity_accuracy --clients 20000            # seed 11 by default

Everything goes through the product: the generator's feeds (a child process, written into a
fresh temporary folder, never a cache), the product's loader and phone table, the product's
staging (`dbt build --select staging`), its reader of the staged person records
(assets/identity/io.py, `read_records`, what the identity asset reads) and its engine
(`resolve`, with the default thresholds and the shipped model, or `--model`).

Disjoint from the training data. The shipped model (assets/identity/models/person_model.json)
records what it was trained on (`consent_center.trained_on`: the generator's feeds for 20,000
clients, seed 7, that is persons P000000000-P000019999). The generator derives a person's
phone, passport and e-mail number from the person's index alone (sources/generator/people.py),
so persons 0-19,999 of any seed carry the training persons' phones and passports. Hence this
benchmark generates `training clients + --clients` persons with another seed and scores only
the persons with an index at or above the training size (P000020000 onwards here): other
names, birth dates and addresses (another seed) and other phones, passports and e-mails
(other indices). Staging runs over the whole generated landing zone; the records of the first
persons are dropped from the engine's input frame before resolution (by their truth person).

Checks (any failure: exit 1): the model's training data is known and the seed differs; every
scored person is outside the training range; every input record got exactly one client;
precision and recall computed here equal the product's `pairwise_scores`; precision and
recall reach the targets of the product's identity_accuracy check (0.995 / 0.99).

Writes benchmarks/results/identity-<clients>-<time>-<commit>.json.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from benchmarks.common import (
    Verification,
    benchmark_parser,
    generate_feeds,
    generation_figures,
    record_and_finish,
    run_measured,
    scratch_database,
    server_version,
    stage_feeds,
)

TRAINED_ON = re.compile(r"--clients (\d+) --seed (\d+)")


def training_data(model_path: Path) -> tuple[int, int, int] | None:
    """(clients, seed, records) the model says it was trained on, if it says so."""
    meta = json.loads(model_path.read_text(encoding="utf-8")).get("consent_center", {})
    found = TRAINED_ON.search(meta.get("trained_on", ""))
    if not found:
        return None
    return int(found.group(1)), int(found.group(2)), int(meta.get("trained_records") or 0)


def person_index(person_id: str) -> int:
    return int(person_id.lstrip("P"))


def read_truth(landing: Path) -> dict[tuple[str, str], str]:
    with open(landing / "truth" / "person_xref.csv", newline="", encoding="utf-8") as handle:
        return {
            (r["source"], r["source_record_id"]): r["person_id"] for r in csv.DictReader(handle)
        }


def resolve_step(url: str, landing: Path, first_scored: int, model: Path) -> dict:
    """The measured step: read the staged records, keep the scored persons', resolve."""
    from assets.identity import DEFAULT_THRESHOLDS, resolve
    from assets.identity.io import read_records

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        staged = read_records(conn)
    read_s = time.perf_counter() - started
    truth = read_truth(landing)
    person = [truth.get(k) for k in zip(staged["source"], staged["source_record_id"], strict=True)]
    keep = [p is not None and person_index(p) >= first_scored for p in person]
    records = staged.loc[keep].reset_index(drop=True)
    res = resolve(records, model, thresholds=DEFAULT_THRESHOLDS)
    xref = res.xref[["source", "source_record_id", "client_id"]]
    return {
        "staged_records": len(staged),
        "records_without_truth": sum(p is None for p in person),
        "records": len(records),
        "input_keys": sorted(zip(records["source"], records["source_record_id"], strict=True)),
        "xref": list(xref.itertuples(index=False, name=None)),
        "read_s": read_s,
        "timings": {k: round(v, 2) for k, v in res.timings.items()},
        "stats": {k: (v if isinstance(v, int | str) else float(v)) for k, v in res.stats.items()},
        "thresholds": list(DEFAULT_THRESHOLDS),
    }


def pair_scores(xref: list[tuple], truth: dict[tuple[str, str], str]) -> dict:
    """Pairwise precision / recall / F1, counted here: pairs of records in one (client, person)
    cell are true positives, pairs in one client predicted, pairs in one person true."""

    def pairs(counter: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    rows = [(client, truth[(s, r)]) for s, r, client in xref if (s, r) in truth]
    tp = pairs(Counter(rows))
    predicted = pairs(Counter(c for c, _ in rows))
    true = pairs(Counter(p for _, p in rows))
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": predicted - tp,
        "fn": true - tp,
        "records": len(rows),
        "persons": len({p for _, p in rows}),
        "clients": len({c for c, _ in rows}),
    }


def main() -> None:
    from assets.identity import DEFAULT_MODEL_PATH, pairwise_scores
    from assets.identity.assets import MIN_PRECISION, MIN_RECALL

    parser = benchmark_parser(
        __doc__.splitlines()[0], clients=20_000, seed=11, clients_help="persons scored", feeds=False
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument(
        "--training-clients",
        type=int,
        help="persons the model was trained on (default: read from the model's trained_on)",
    )
    parser.add_argument("--training-seed", type=int, help="(default: from the model)")
    args = parser.parse_args()
    started_at = datetime.now(UTC)

    trained = training_data(args.model)
    training_clients = args.training_clients or (trained[0] if trained else None)
    training_seed = (
        args.training_seed if args.training_seed is not None else (trained[1] if trained else None)
    )
    v = Verification()
    known = v.check(
        "the model's training data is known (clients, seed)",
        training_clients is not None and training_seed is not None,
        {"clients": training_clients, "seed": training_seed, "model": str(args.model)},
    )
    if not known:
        raise SystemExit("the model does not say what it was trained on: give --training-*")
    v.check(
        "the seed differs from the training seed",
        args.seed != training_seed,
        {"seed": args.seed, "training_seed": training_seed},
    )
    generated = training_clients + args.clients

    with tempfile.TemporaryDirectory(prefix="cc-bench-identity-") as tmp:
        landing = Path(tmp) / "landing"
        generation = generate_feeds(landing, clients=generated, seed=args.seed)
        truth = read_truth(landing)
        with scratch_database() as url:
            pg_version = server_version(url)
            preparation = stage_feeds(url, landing)
            step, seconds, memory = run_measured(
                resolve_step, url, landing, training_clients, args.model
            )

    scored = {truth[k] for k in step["input_keys"]}
    v.check(
        "the generator wrote every scored person",
        len(scored) == args.clients,
        {"persons": len(scored), "asked": args.clients},
    )
    v.check(
        "every scored person is outside the training range",
        min(person_index(p) for p in scored) >= training_clients,
        {"first": min(scored), "training_persons": f"P0-P{training_clients - 1}"},
    )
    keys = [(s, r) for s, r, _ in step["xref"]]
    v.equal("every input record got exactly one client", sorted(keys), step["input_keys"])
    mine = pair_scores(step["xref"], truth)
    import pandas as pd

    theirs = pairwise_scores(
        pd.DataFrame(step["xref"], columns=["source", "source_record_id", "client_id"]),
        pd.DataFrame(
            [(s, r, p) for (s, r), p in truth.items()],
            columns=["source", "source_record_id", "person_id"],
        ),
    )
    v.equal(
        "pair counts computed here = the product's pairwise_scores",
        [mine["tp"], mine["fp"], mine["fn"], mine["records"]],
        [int(theirs["tp"]), int(theirs["fp"]), int(theirs["fn"]), int(theirs["records"])],
    )
    v.check(
        f"precision >= {MIN_PRECISION}",
        mine["precision"] >= MIN_PRECISION,
        round(mine["precision"], 6),
    )
    v.check(f"recall >= {MIN_RECALL}", mine["recall"] >= MIN_RECALL, round(mine["recall"], 6))

    resolve_s = step["timings"].get("total_s")
    figures = {
        "records": step["records"],
        "persons": mine["persons"],
        "clients": mine["clients"],
        "precision": round(mine["precision"], 6),
        "recall": round(mine["recall"], 6),
        "f1": round(mine["f1"], 6),
        "tp": mine["tp"],
        "fp": mine["fp"],
        "fn": mine["fn"],
        "read_seconds": round(step["read_s"], 2),
        "resolve_seconds": resolve_s,
        "step_seconds": round(seconds, 2),
        "timings": step["timings"],
        "stats": step["stats"],
        "thresholds": step["thresholds"],
        "staged_records": step["staged_records"],
        "staged_records_without_truth": step["records_without_truth"],
        "memory": {
            "what": "the measured step only (read the staged records, resolve) in a fresh "
            "process, imports included; DuckDB runs in it (StepMemory, benchmarks/common.py)",
            **memory.__dict__,
        },
        "preparation": preparation,
        "generation": generation_figures(generation),
    }
    parameters = {
        "clients": args.clients,
        "seed": args.seed,
        "generated_clients": generated,
        "scored_persons": f"P{training_clients:09d}-P{generated - 1:09d}",
        "model": str(args.model.resolve().relative_to(Path.cwd().resolve()))
        if args.model.resolve().is_relative_to(Path.cwd().resolve())
        else str(args.model),
        "model_trained_on": {
            "clients": training_clients,
            "seed": training_seed,
            "records": trained[2] if trained else None,
        },
        "feeds": "generated into a fresh temporary folder",
    }
    record_and_finish(
        "identity", args, parameters, figures, v, pg_version=pg_version, started_at=started_at
    )


if __name__ == "__main__":
    main()
