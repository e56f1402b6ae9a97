"""Term frequencies carried by the model, so that a pair's score depends on the pair alone.

splink's default derives a value's frequency from the records being scored. Then every
pair's probability moves whenever any record arrives, changes or is erased, and an
incremental run (which scores only the pairs of new records) can never publish what one run
over the same records does (DESIGN section 12). So the frequencies are measured once, on the
data the model is trained on, and saved in the model file; scoring looks values up there.

What is saved: per term-frequency column, the number of non-null values trained on and the
count of every value seen at least twice, keyed by a 64-bit hash of the value (pandas'
`hash_pandas_object`, fixed key: stable across runs and machines), so that the file holds no
name, phone or e-mail in clear. A value seen once, or never, counts once: it is rare.

The frequency is shrunk towards the trained u of the exact level with a prior of
TF_PRIOR_RECORDS records, (count + k*u) / (total + k), so that a small training set does not
say "Соколова is 20% of all surnames" and wipe out the evidence of an exact match.
"""

from __future__ import annotations

import pandas as pd

#: pseudo-count of the term-frequency prior (records)
TF_PRIOR_RECORDS = 10_000

#: key of the frequencies in the model's own metadata (training.META_KEY)
META_FIELD = "term_frequencies"


def tf_columns(model: dict) -> dict[str, float]:
    """tf column -> u probability of its exact level (the average term frequency)."""
    cols: dict[str, float] = {}
    for comparison in model.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            col = level.get("tf_adjustment_column")
            if col and col not in cols:
                cols[col] = float(level.get("u_probability") or 0.0)
    return cols


def value_keys(values: pd.Series) -> pd.Series:
    """The saved key of each value: 16 hex digits of a 64-bit hash of its text."""
    hashed = pd.util.hash_pandas_object(values.astype(str), index=False)
    return hashed.map("{:016x}".format)


def measure(prepared: pd.DataFrame, columns: list[str]) -> dict:
    """Frequencies of `columns` in a prepared frame, as saved in the model."""
    out: dict = {"total": {}, "counts": {}}
    for col in columns:
        values = prepared[col].dropna() if col in prepared.columns else pd.Series([], dtype=str)
        out["total"][col] = len(values)
        counts = value_keys(values).value_counts()
        repeated = counts[counts >= 2].sort_index()
        out["counts"][col] = {str(k): int(v) for k, v in repeated.items()}
    return out


def lookup(
    prepared: pd.DataFrame, col: str, prior_u: float, frequencies: dict | None
) -> pd.DataFrame:
    """The term-frequency table splink joins for `col`: one row per distinct value in
    `prepared`, its frequency from the model's saved counts (a function of the value and
    the model only)."""
    values = pd.Series(prepared[col].dropna().unique(), dtype=object)
    frequencies = frequencies or {}
    total = int(frequencies.get("total", {}).get(col, 0))
    saved = frequencies.get("counts", {}).get(col, {})
    count = value_keys(values).map(saved).fillna(1).astype(float) if len(values) else values
    k = TF_PRIOR_RECORDS if prior_u > 0 else 0
    denominator = total + k if total + k > 0 else 1
    tf = (count.to_numpy(dtype=float) + k * prior_u) / denominator
    return pd.DataFrame({col: values.to_numpy(dtype=object), f"tf_{col}": tf})
