"""splink's charts as HTML: match weights, m/u parameters, comparison viewer, cluster studio."""

from __future__ import annotations

from pathlib import Path


def write_charts(linker, out_dir: Path | str, resolution=None) -> list[Path]:
    """Write the model charts; with a Resolution made with keep_linker=True, also the
    comparison viewer and cluster studio over its predictions and clusters."""
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
        pred = resolution.predictions[0]
        p = out / "comparison_viewer.html"
        linker.visualisations.comparison_viewer_dashboard(pred, str(p), overwrite=True)
        written.append(p)
        clustered = resolution.prepared.rename(columns={"client_id": "cluster_id"})
        sdf = linker.table_management.register_table(
            clustered, "__identity_clusters", overwrite=True
        )
        p = out / "cluster_studio.html"
        linker.visualisations.cluster_studio_dashboard(
            pred, sdf, str(p), sampling_method="by_cluster_size", sample_size=20, overwrite=True
        )
        written.append(p)
    return written
