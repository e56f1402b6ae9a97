"""generate(): the whole run, streamed chunk by chunk with flat memory."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from . import catalog as cat_mod
from . import people
from .config import GenerationSummary, GeneratorConfig
from .histories import ChunkWriter
from .questions import HEADER as QUESTION_HEADER
from .questions import ask
from .truth_readme import TRUTH_README
from .writers import Landing, Table

LANDING_SOURCES = ("crm", "web", "helpdesk", "partner", "catalog")


def _chunk_rngs(seed: int, chunk: int) -> tuple[np.random.Generator, random.Random]:
    rng = np.random.Generator(np.random.PCG64([seed, chunk]))
    return rng, random.Random(int(rng.integers(0, 2**62)))


def generate(
    out_dir: Path, config: GeneratorConfig, progress: Callable[[int], None] | None = None
) -> GenerationSummary:
    """Write the five feeds and the truth under out_dir.

    out_dir may be empty or hold the output of an earlier run (which is replaced); a
    landing zone the generator did not write is never touched (FileExistsError).
    Output depends only on config (chunk_size included), never on time or hash seeds.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [n for n in (*LANDING_SOURCES, "truth") if (out_dir / n).exists()]
    if existing and not (out_dir / "truth" / "README.md").exists():
        raise FileExistsError(
            f"{out_dir} already holds {', '.join(existing)} that the generator did not write; "
            "choose an empty folder"
        )
    for name in existing:  # a previous generator run: replaced as a whole
        shutil.rmtree(out_dir / name)
    summary = GenerationSummary(str(out_dir), config.clients, config.seed)

    snapshots = cat_mod.batches(config.start, config.end)
    for snap in snapshots:
        for name, (header, rows) in snap.files.items():
            t = Table(out_dir / "catalog" / snap.batch_id / name, header)
            for row in rows:
                t.write(row)
            t.close()
            summary.files[f"catalog/{snap.batch_id}/{name}"] = len(rows)
        (out_dir / "catalog" / snap.batch_id / "_SUCCESS").write_bytes(b"")
    catalog = cat_mod.truth_catalog(snapshots[-1])  # the newest snapshot is in force

    landing = Landing(out_dir, config.start, config.end, config.batches)
    truth_dir = out_dir / "truth"
    xref = Table(truth_dir / "person_xref.csv", ("source", "source_record_id", "person_id"))
    bad = Table(
        truth_dir / "bad_rows.csv",
        (
            "source",
            "batch_id",
            "file_name",
            "line_number",
            "record_id",
            "stage",
            "rule",
            "description",
        ),
    )
    questions = Table(truth_dir / "expected_status.csv", QUESTION_HEADER)
    per_person = 2
    # expected questions stay under the cap (the cap is only a guard), spread over all chunks
    q_rate = min(config.question_rate, 0.8 * config.max_questions / config.clients) / per_person
    t0 = datetime.combine(config.start, datetime.min.time())
    t_end = datetime.combine(config.end, datetime.min.time()) + timedelta(days=1)
    bad_rows = 0
    try:
        done = 0
        chunk = 0
        while done < config.clients:
            n = min(config.chunk_size, config.clients - done)
            rng, rnd = _chunk_rngs(config.seed, chunk)
            chunk_people = people.draw(rng, done, n, config.noise.namesake)
            qrnd = random.Random(int(rng.integers(0, 2**62)))
            cw = ChunkWriter(config, landing, xref, bad, catalog, rnd, chunk_people)
            for i in range(n):
                person = cw.story(i)
                boost = 4 if any(pr.restricted_channels for pr in person.facts.partner) else 1
                if qrnd.random() < q_rate * boost and questions.rows < config.max_questions:
                    for row in ask(person, catalog, qrnd, per_person, t0, t_end):
                        if questions.rows < config.max_questions:
                            questions.write(row)
            bad_rows += cw.bad_count
            done += n
            chunk += 1
            if progress is not None:
                progress(done)
    finally:
        summary.files.update(landing.close())
        for t in (xref, bad, questions):
            t.close()
    (truth_dir / "README.md").write_text(TRUTH_README, encoding="utf-8")
    summary.files = dict(sorted(summary.files.items()))
    for key, rows in summary.files.items():
        source = key.split("/", 1)[0]
        summary.sources[source] = summary.sources.get(source, 0) + rows
    summary.truth = {
        "person_xref.csv": xref.rows,
        "expected_status.csv": questions.rows,
        "bad_rows.csv": bad.rows,
    }
    summary.bad_rows = bad_rows
    summary.elapsed_seconds = round(time.perf_counter() - started, 3)
    return summary
