"""Identity resolution engine: person records -> golden clients (DESIGN section 6, issue 4).

The engine is pure Python (pandas + splink on in-process DuckDB); the pipeline side lives in
`io.py` (PostgreSQL in and out with COPY) and `assets.py` (the Dagster multi-asset
`identity_resolution`, the `train_identity_model` asset and the `identity_accuracy` check).

Input (one row per person-bearing source record): source (crm|web|helpdesk|partner),
source_record_id, last_name, first_name, middle_name, fio (helpdesk free text), birth_date,
phone_e164, email, passport_digits, address, contract_numbers (list), updated_at.

Public API:
    train(records, out_path, profile="ru")          -> model dict, JSON artefact written
    resolve(records, model_path, existing=None, thresholds=(0.5, 0.99)) -> Resolution
    golden_fields(records, xref)                     -> golden_client rows (survivorship)
    pairwise_scores(xref, truth)                     -> precision / recall / f1 / tp / fp / fn
    write_charts(linker, out_dir, resolution=None)   -> splink HTML charts
"""

from .charts import write_charts
from .evaluation import pairwise_scores
from .resolve import DEFAULT_THRESHOLDS, Resolution, resolve
from .survivorship import SOURCE_TRUST, golden_fields
from .training import DEFAULT_MODEL_PATH, train

__all__ = [
    "DEFAULT_MODEL_PATH",
    "DEFAULT_THRESHOLDS",
    "SOURCE_TRUST",
    "Resolution",
    "golden_fields",
    "pairwise_scores",
    "resolve",
    "train",
    "write_charts",
]
