"""The DPO's identity review: splink's comparison viewer and cluster studio, on demand only.

Both dashboards show record pairs and clusters with their raw fields (names, birth dates,
passports, phones, e-mails), so no scheduled run writes them (DESIGN section 8: personal data
stays where it belongs). `consent-center identity-report [--out DIR]` writes them for the DPO:

* every staged record that is not depersonalised is scored again with the active model (the
  one the runs use), keeping splink's intermediate columns, over the whole data set whatever
  its size, so the dashboards always show the current data (never a stale file);
* the clusters shown are the published ones (consent.client_xref);
* each file is created private to the owner (umask 077, then 0600), in a folder created 0700;
* every file written is listed in $CONSENT_HOME/identity/identity_report_files (paths only),
  and depersonalisation (assets/depersonalisation.py) calls `remove_identity_reports` whenever
  it erases a client: every listed file and the default folder are deleted, so an erased
  person's data does not survive in a dashboard.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.resources import ConsentCenterResource
from pipelines.settings import Settings

from . import features, predict, term_frequencies
from . import io as identity_io
from .assets import active_model_path, split_pinned
from .charts import DASHBOARD_FILES, private_files, write_dashboards
from .resolve import DEFAULT_THRESHOLDS
from .training import load_model_and_meta, scale_prior


def default_report_dir(settings: Settings) -> Path:
    return settings.reports_dir / "identity-report"


def manifest_path(settings: Settings) -> Path:
    return settings.home / "identity" / "identity_report_files"


def _listed(settings: Settings) -> list[Path]:
    path = manifest_path(settings)
    if not path.exists():
        return []
    return [Path(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _record(settings: Settings, written: list[Path]) -> None:
    listed = {str(p) for p in _listed(settings)} | {str(p.resolve()) for p in written}
    path = manifest_path(settings)
    with private_files():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{p}\n" for p in sorted(listed)), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def write_identity_report(consent_center: ConsentCenterResource, out: Path | None = None) -> dict:
    """Score every matchable record again and write the two dashboards (0600) into `out`
    (default $CONSENT_HOME/reports/identity-report/). Returns paths and counts only."""
    settings = consent_center.settings()
    target = Path(out) if out is not None else default_report_dir(settings)
    model_path = active_model_path(settings)
    with consent_center.connect(autocommit=True) as conn:
        records = identity_io.read_records(conn)
        existing = identity_io.read_xref(conn)
        pinned = identity_io.read_pinned(conn)
    matched, _, _ = split_pinned(records, existing, pinned)
    if len(matched) < 2:
        raise ValueError("fewer than two staged person records: run the pipeline first")
    prepared = features.prepare(matched)
    model, meta = load_model_and_meta(model_path)
    scale_prior(model, meta.get("trained_records"), len(prepared))
    model["retain_intermediate_calculation_columns"] = True
    scored = predict.score(
        prepared,
        model,
        threshold=DEFAULT_THRESHOLDS[0],
        frequencies=meta.get(term_frequencies.META_FIELD),
    )
    published = dict(
        zip(
            features.record_key(existing["source"], existing["source_record_id"]),
            existing["client_id"],
            strict=True,
        )
    )
    # a record staged after the last run has no client yet: it is its own cluster here
    cluster = prepared["unique_id"].map(published).fillna(prepared["unique_id"])
    clustered = prepared.assign(cluster_id=cluster.to_numpy())
    written = write_dashboards(scored.linker, scored.predictions[0], clustered, target)
    _record(settings, written)
    return {
        "files": [str(p) for p in written],
        "records": len(prepared),
        "pairs": len(scored.edges),
        "model_path": str(model_path),
    }


def remove_identity_reports(settings: Settings) -> dict[str, int]:
    """Delete every dashboard identity-report wrote (listed) and its default folder; counts
    only. Called by depersonalisation on every erasure."""
    removed = 0
    for path in _listed(settings):
        if path.name in DASHBOARD_FILES and path.is_file():  # never anything else
            path.unlink()
            removed += 1
    folder = default_report_dir(settings)
    folders = 0
    if folder.exists():
        removed += sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        folders = 1
    manifest_path(settings).unlink(missing_ok=True)
    return {"files": removed, "folders": folders}
