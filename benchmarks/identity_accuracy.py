"""Identity resolution accuracy and speed (not a test).

    python -m benchmarks.identity_accuracy ru --clients 100000         # generator feeds
    python -m benchmarks.identity_accuracy ru --clients 20000 --train  # retrain the artefact
    python -m benchmarks.identity_accuracy hist                        # historical figures 50k
    python -m benchmarks.identity_accuracy fake                        # fake_1000
    python -m benchmarks.identity_accuracy ru --clients 20000 --incremental

Prints one JSON line: pairwise precision / recall / F1, timings, peak memory. Run under
`/usr/bin/time -v` for an outside view of peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from assets.identity import DEFAULT_MODEL_PATH, pairwise_scores, resolve, train, write_charts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phone_e164(s: pd.Series) -> pd.Series:
    d = s.astype("string").str.replace(r"\D", "", regex=True)
    d = d.where(~((d.str.len() == 11) & d.str.match(r"^[78]")), d.str.slice(1))
    return ("+7" + d).where(d.str.len() == 10)


def _read_csvs(root: Path, source: str, name: str) -> pd.DataFrame:
    frames = [
        pd.read_csv(
            p,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="skip",
            encoding_errors="replace",
        )
        for p in sorted((root / source).glob(f"*/{name}"))
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def landing_to_records(root: Path) -> pd.DataFrame:
    """The input-contract frame from a generator landing zone (stands in for dbt staging)."""
    crm = _read_csvs(root, "crm", "clients.csv")
    crm = crm.sort_values("updated_at").drop_duplicates("crm_client_id", keep="last")
    contracts = _read_csvs(root, "crm", "contracts.csv")
    owned = contracts.groupby("crm_client_id")["contract_number"].agg(list)
    crm_r = pd.DataFrame(
        {
            "source": "crm",
            "source_record_id": crm["crm_client_id"],
            "last_name": crm["last_name"],
            "first_name": crm["first_name"],
            "middle_name": crm["middle_name"],
            "birth_date": crm["birth_date"],
            "phone_e164": phone_e164(crm["phone"]),
            "email": crm["email"],
            "passport_digits": crm["passport"],
            "address": crm["address"],
            "contract_numbers": crm["crm_client_id"].map(owned),
            "updated_at": crm["updated_at"],
        }
    )
    events = []
    for p in sorted((root / "web").glob("*/events.jsonl")):
        with p.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                person = e.get("person") or {}
                events.append(
                    {
                        "account_id": e.get("account_id"),
                        "occurred_at": e.get("occurred_at"),
                        **person,
                    }
                )
    web = pd.DataFrame(events).dropna(subset=["account_id"])
    web = web.sort_values("occurred_at").drop_duplicates("account_id", keep="last")
    web_r = pd.DataFrame(
        {
            "source": "web",
            "source_record_id": web["account_id"],
            "last_name": web["last_name"],
            "first_name": web["first_name"],
            "middle_name": web["middle_name"],
            "birth_date": web["birth_date"],
            "phone_e164": phone_e164(web["phone"]),
            "email": web["email"],
            "updated_at": web["occurred_at"],
        }
    )
    hd = _read_csvs(root, "helpdesk", "tickets.csv").drop_duplicates("ticket_id", keep="last")
    hd_r = pd.DataFrame(
        {
            "source": "helpdesk",
            "source_record_id": hd["ticket_id"],
            "fio": hd["fio"].str.lower().str.replace("ё", "е"),
            "birth_date": hd["birth_date"],
            "phone_e164": phone_e164(hd["phone"]),
            "email": hd["email"],
            "passport_digits": hd["passport"],
            "contract_numbers": hd["contract_number"].map(
                lambda c: [c] if isinstance(c, str) and c else []
            ),
            "updated_at": hd["received_at"],
        }
    )
    pa = _read_csvs(root, "partner", "partner_clients.csv")
    pa["key"] = pa["partner_code"] + ":" + pa["partner_client_id"]
    pa = pa.sort_values("obtained_at").drop_duplicates("key", keep="last")
    pa_r = pd.DataFrame(
        {
            "source": "partner",
            "source_record_id": pa["key"],
            "last_name": pa["last_name"],
            "first_name": pa["first_name"],
            "middle_name": pa["middle_name"],
            "birth_date": pa["birth_date"],
            "phone_e164": phone_e164(pa["phone"]),
            "email": pa["email"],
            "updated_at": pa["obtained_at"],
        }
    )
    out = pd.concat([crm_r, web_r, hd_r, pa_r], ignore_index=True)
    out = out.dropna(subset=["source_record_id"]).drop_duplicates(["source", "source_record_id"])
    for c in ["last_name", "first_name", "middle_name", "email"]:
        out[c] = out[c].str.lower().str.replace("ё", "е").str.strip()
    out["birth_date"] = pd.to_datetime(out["birth_date"], errors="coerce").dt.date
    return out


def generated(clients: int, seed: int, workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sources.generator import GeneratorConfig, generate

    root = workdir / f"landing_{clients}_{seed}"
    if not (root / "truth" / "person_xref.csv").exists():
        generate(root, GeneratorConfig(clients=clients, seed=seed))
    truth = pd.read_csv(root / "truth" / "person_xref.csv", dtype=str)
    return landing_to_records(root), truth


def hist_records() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_parquet(SHARED / "historical_figures_with_errors_50k.parquet")
    rec = pd.DataFrame(
        {
            "source": "crm",
            "source_record_id": df["unique_id"].astype(str),
            "last_name": df["surname"],
            "first_name": df["first_name"],
            "birth_date": pd.to_datetime(df["dob"], errors="coerce").dt.date,
            "address": df["birth_place"],
            "postcode": df["postcode_fake"],
            "occupation": df["occupation"],
        }
    )
    truth = rec[["source", "source_record_id"]].assign(person_id=df["cluster"].astype(str))
    return rec, truth


def fake_records() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_csv(SHARED / "fake_1000.csv", dtype=str)
    rec = pd.DataFrame(
        {
            "source": "crm",
            "source_record_id": df["unique_id"],
            "last_name": df["surname"],
            "first_name": df["first_name"],
            "birth_date": pd.to_datetime(df["dob"], errors="coerce").dt.date,
            "address": df["city"],
            "email": df["email"],
        }
    )
    truth = rec[["source", "source_record_id"]].assign(person_id=df["cluster"])
    return rec, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=["ru", "hist", "fake"])
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--train", action="store_true", help="(ru) retrain the repo artefact")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--lower", type=float, default=None)
    ap.add_argument("--upper", type=float, default=None)
    ap.add_argument(
        "--incremental",
        action="store_true",
        help="resolve 90%% of records, then all with the first xref as existing",
    )
    ap.add_argument("--charts", type=Path, default=None, help="write splink HTML charts here")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "identity")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if args.dataset == "ru":
        records, truth = generated(args.clients, args.seed, args.workdir)
        profile, model = "ru", args.model or DEFAULT_MODEL_PATH
    else:
        records, truth = hist_records() if args.dataset == "hist" else fake_records()
        profile = "hist"
        model = args.model or args.workdir / f"person_model_{args.dataset}.json"
    load_s = time.perf_counter() - t0

    train_s = None
    if args.train or args.dataset != "ru":
        t1 = time.perf_counter()
        train(records, model, profile=profile)
        train_s = time.perf_counter() - t1

    from assets.identity import DEFAULT_THRESHOLDS

    # the English sets are far noisier than the Russian feeds: a lower merge threshold
    default_upper = DEFAULT_THRESHOLDS[1] if args.dataset == "ru" else 0.9
    thresholds = (args.lower or DEFAULT_THRESHOLDS[0], args.upper or default_upper)
    result: dict = {
        "dataset": args.dataset,
        "records": len(records),
        "load_s": load_s,
        "train_s": train_s,
        "thresholds": thresholds,
    }
    if args.incremental:
        first = records.sample(frac=0.9, random_state=1).sort_index()
        r1 = resolve(first, model, thresholds=thresholds)
        r2 = resolve(records, model, existing=r1.xref, thresholds=thresholds)
        kept = r1.xref.merge(r2.xref, on=["source", "source_record_id"], suffixes=("_1", "_2"))
        result["first_run"] = {"timings": r1.timings, "stats": r1.stats}
        result["ids_kept_share"] = float((kept["client_id_1"] == kept["client_id_2"]).mean())
        res = r2
    else:
        res = resolve(records, model, thresholds=thresholds, keep_linker=bool(args.charts))
    result.update(pairwise_scores(res.xref, truth))
    result["timings"] = res.timings
    result["stats"] = res.stats
    result["peak_rss_mib"] = peak_rss_mib()
    if args.charts:
        result["charts"] = [str(p) for p in write_charts(res.linker, args.charts, res)]
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
