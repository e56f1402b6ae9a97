"""splink's charts as HTML.

* `write_charts`: the model charts (match weights, m/u parameters). They show the model's
  parameters only, no record: every run writes them to $CONSENT_HOME/reports/identity/.
* `write_dashboards`: the comparison viewer and cluster studio. They show record pairs and
  clusters with their raw fields (names, birth dates, passports, phones, e-mails): personal
  data. Only the DPO command `consent-center identity-report` writes them (review.py), each file
  created private to the owner (0600) and listed so that depersonalisation can remove it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

#: the dashboards' file names (personal data inside)
DASHBOARD_FILES = ("comparison_viewer.html", "cluster_studio.html")


def write_charts(linker, out_dir: Path | str, resolution=None) -> list[Path]:
    """Write the model charts (no personal data) into out_dir; with a Resolution made with
    keep_linker=True (a benchmark, a test), also its dashboards, private (write_dashboards)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    p = out / "match_weights.html"
    linker.visualisations.match_weights_chart().save(str(p))
    written.append(p)
    p = out / "m_u_parameters.html"
    linker.visualisations.m_u_parameters_chart().save(str(p))
    written.append(p)
    if resolution is not None and resolution.predictions:
        clustered = resolution.prepared.rename(columns={"client_id": "cluster_id"})
        written += write_dashboards(linker, resolution.predictions[0], clustered, out)
    return written


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files and folders created meanwhile are the owner's only (umask 077), so a dashboard is
    never readable by others, not even between its creation and a chmod."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def write_dashboards(linker, prediction, clustered, out_dir: Path | str) -> list[Path]:
    """Comparison viewer over `prediction` (a splink prediction made with intermediate
    columns) and cluster studio over `clustered` (the prepared records with `cluster_id`);
    every file 0600, its folder 0700 when created here."""
    out = Path(out_dir)
    written = []
    with private_files():
        out.mkdir(parents=True, exist_ok=True)
        p = out / DASHBOARD_FILES[0]
        p.unlink(missing_ok=True)
        linker.visualisations.comparison_viewer_dashboard(prediction, str(p), overwrite=True)
        os.chmod(p, 0o600)
        written.append(p)
        sdf = linker.table_management.register_table(
            clustered, "__identity_clusters", overwrite=True
        )
        p = out / DASHBOARD_FILES[1]
        p.unlink(missing_ok=True)
        linker.visualisations.cluster_studio_dashboard(
            prediction,
            sdf,
            str(p),
            sampling_method="by_cluster_size",
            sample_size=20,
            overwrite=True,
        )
        os.chmod(p, 0o600)
        written.append(p)
    return written
