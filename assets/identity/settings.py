"""The splink model definition: comparisons and blocking rules for person records.

Two profiles share the engine (features, training, prediction, clustering):

* ``ru``   - Russian client data (CRM, web, helpdesk, partner): names with initials,
  transliteration, swapped name parts, birth date with day/month swaps, phone, e-mail,
  passport, address.
* ``hist`` - the English benchmark set (historical_figures_with_errors_50k): names, birth date,
  birth place (as address), postcode, occupation.

All fuzzy comparisons run on ASCII skeleton columns (see features.py) because DuckDB's string
distances count UTF-8 bytes.
"""

from __future__ import annotations

from typing import Any

from splink import SettingsCreator, block_on
from splink.blocking_rule_library import CustomRule

PROFILES = ("ru", "hist")


def _lvl(
    sql: str,
    label: str,
    m: float | None = None,
    *,
    null: bool = False,
    tf: str | None = None,
    neutral: bool = False,
) -> dict[str, Any]:
    """One comparison level. `m` is the starting (prior) m probability: EM refines it where
    the level is observed in training and it stays where it is not. A `neutral` level has
    fixed m = u (weight 0), for evidence already counted by another comparison."""
    d: dict[str, Any] = {"sql_condition": sql, "label_for_charts": label}
    if null:
        d["is_null_level"] = True
    if m is not None:
        d["m_probability"] = m
    if neutral:
        d.update(
            m_probability=0.01, u_probability=0.01, fix_m_probability=True, fix_u_probability=True
        )
    if tf:
        d["tf_adjustment_column"] = tf
        d["tf_adjustment_weight"] = 1.0
    return d


def ELSE(m: float) -> dict[str, Any]:  # reads like the SQL keyword
    return _lvl("ELSE", "all other", m)


def last_name() -> dict[str, Any]:
    return {
        "output_column_name": "last_name",
        "comparison_levels": [
            _lvl("ln_sk_l IS NULL OR ln_sk_r IS NULL", "null", null=True),
            _lvl("ln_sk_l = ln_sk_r", "exact (skeleton)", 0.9, tf="ln_sk"),
            _lvl("jaro_winkler_similarity(ln_sk_l, ln_sk_r) >= 0.94", "jw >= 0.94", 0.04),
            _lvl("jaro_winkler_similarity(ln_sk_l, ln_sk_r) >= 0.85", "jw >= 0.85", 0.02),
            _lvl("ln_sk_l = fn_sk_r AND fn_sk_l = ln_sk_r", "swapped with first name", 0.02),
            ELSE(0.02),
        ],
    }


def first_name() -> dict[str, Any]:
    return {
        "output_column_name": "first_name",
        "comparison_levels": [
            _lvl("fn_init_l IS NULL OR fn_init_r IS NULL", "null", null=True),
            _lvl("fn_sk_l = fn_sk_r", "exact (skeleton)", 0.85, tf="fn_sk"),
            _lvl("jaro_winkler_similarity(fn_sk_l, fn_sk_r) >= 0.92", "jw >= 0.92", 0.04),
            _lvl(
                "fn_sk_l = ln_sk_r AND ln_sk_l = fn_sk_r",
                "swapped with last name (counted in last_name)",
                neutral=True,
            ),
            _lvl(
                "fn_init_l = fn_init_r AND (fn_sk_l IS NULL OR fn_sk_r IS NULL)",
                "initial agrees with name",
                0.06,
            ),
            ELSE(0.03),
        ],
    }


def middle_name() -> dict[str, Any]:
    return {
        "output_column_name": "middle_name",
        "comparison_levels": [
            _lvl("mn_init_l IS NULL OR mn_init_r IS NULL", "null", null=True),
            _lvl("mn_sk_l = mn_sk_r", "exact (skeleton)", 0.85, tf="mn_sk"),
            _lvl("jaro_winkler_similarity(mn_sk_l, mn_sk_r) >= 0.9", "jw >= 0.9", 0.04),
            _lvl(
                "mn_init_l = mn_init_r AND (mn_sk_l IS NULL OR mn_sk_r IS NULL)",
                "initial agrees with name",
                0.08,
            ),
            ELSE(0.03),
        ],
    }


def birth_date() -> dict[str, Any]:
    return {
        "output_column_name": "birth_date",
        "comparison_levels": [
            _lvl("birth_date_l IS NULL OR birth_date_r IS NULL", "null", null=True),
            _lvl("birth_date_l = birth_date_r", "exact", 0.9, tf="birth_date"),
            _lvl(
                "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) "
                "AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) "
                "AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)",
                "day and month swapped",
                0.02,
            ),
            _lvl("levenshtein(birth_date_l, birth_date_r) <= 1", "one digit differs", 0.04),
            _lvl("levenshtein(birth_date_l, birth_date_r) <= 2", "two digits differ", 0.02),
            ELSE(0.02),
        ],
    }


def phone() -> dict[str, Any]:
    return {
        "output_column_name": "phone",
        "comparison_levels": [
            _lvl("phone_l IS NULL OR phone_r IS NULL", "null", null=True),
            _lvl("phone_l = phone_r", "exact", 0.8, tf="phone"),
            _lvl("levenshtein(phone_l, phone_r) <= 1", "one digit differs", 0.02),
            ELSE(0.18),
        ],
    }


def email() -> dict[str, Any]:
    return {
        "output_column_name": "email",
        "comparison_levels": [
            _lvl("email_l IS NULL OR email_r IS NULL", "null", null=True),
            _lvl("email_l = email_r", "exact", 0.8, tf="email"),
            _lvl("email_local_l = email_local_r", "same local part", 0.05),
            _lvl("jaro_winkler_similarity(email_local_l, email_local_r) >= 0.88", "jw local", 0.03),
            ELSE(0.12),
        ],
    }


def passport() -> dict[str, Any]:
    return {
        "output_column_name": "passport",
        "comparison_levels": [
            _lvl("passport_l IS NULL OR passport_r IS NULL", "null", null=True),
            _lvl("passport_l = passport_r", "exact", 0.9),
            _lvl("levenshtein(passport_l, passport_r) <= 1", "one digit differs", 0.05),
            ELSE(0.05),
        ],
    }


def address() -> dict[str, Any]:
    return {
        "output_column_name": "address",
        "comparison_levels": [
            _lvl("address_sk_l IS NULL OR address_sk_r IS NULL", "null", null=True),
            _lvl("address_sk_l = address_sk_r", "exact", 0.7, tf="address_sk"),
            _lvl("jaro_winkler_similarity(address_sk_l, address_sk_r) >= 0.9", "jw >= 0.9", 0.15),
            ELSE(0.15),
        ],
    }


def _exact_tf(col: str, label: str) -> dict[str, Any]:
    return {
        "output_column_name": label,
        "comparison_levels": [
            _lvl(f"{col}_l IS NULL OR {col}_r IS NULL", "null", null=True),
            _lvl(f"{col}_l = {col}_r", "exact", 0.8, tf=col),
            _lvl(f"jaro_winkler_similarity({col}_l, {col}_r) >= 0.9", "jw >= 0.9", 0.1),
            ELSE(0.1),
        ],
    }


SWAPPED_NAMES = CustomRule("l.ln_sk = r.fn_sk AND l.fn_sk = r.ln_sk")


def blocking_rules(profile: str = "ru") -> list:
    """Prediction blocking: each rule is an equi-join on selective keys (near-linear)."""
    names = [
        block_on("ln_sk", "birth_date"),
        block_on("fn_sk", "birth_date"),
        block_on("ln_sk", "fn_init", "birth_year"),
        SWAPPED_NAMES,
    ]
    if profile == "hist":
        return [
            *names,
            block_on("ln_sk", "fn_sk"),
            block_on("postcode", "ln_sk"),
            block_on("postcode", "fn_sk"),
            # a small, heavily corrupted benchmark set: looser single-key rules
            block_on("birth_date"),
            block_on("postcode"),
            block_on("ln_sk", "occupation"),
        ]
    return [
        block_on("phone"),
        block_on("email"),
        block_on("passport"),
        *names,
        block_on("email_local", "ln_sk"),
    ]


#: the column that tells whether a comparison has any data at all
COMPARISON_COLUMN = {
    "last_name": "ln_sk",
    "first_name": "fn_init",
    "middle_name": "mn_init",
    "birth_date": "birth_date",
    "phone": "phone",
    "email": "email",
    "passport": "passport",
    "address": "address_sk",
    "postcode": "postcode",
    "occupation": "occupation",
}


def comparisons(profile: str = "ru") -> list[dict[str, Any]]:
    if profile == "hist":
        return [
            last_name(),
            first_name(),
            birth_date(),
            _exact_tf("postcode", "postcode"),
            address(),
            _exact_tf("occupation", "occupation"),
            email(),
        ]
    return [
        last_name(),
        first_name(),
        middle_name(),
        birth_date(),
        phone(),
        email(),
        passport(),
        address(),
    ]


def settings(profile: str = "ru", present: set[str] | None = None) -> SettingsCreator:
    """The model settings; `present` (columns with data) drops comparisons with no data."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    comps = comparisons(profile)
    if present is not None:
        comps = [c for c in comps if COMPARISON_COLUMN[c["output_column_name"]] in present]
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comps,
        blocking_rules_to_generate_predictions=blocking_rules(profile),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=True,
        additional_columns_to_retain=["source", "source_record_id"],
    )


#: tight rules for EM (each leaves the other comparisons free to be estimated)
def em_rules(profile: str = "ru") -> list:
    if profile == "hist":
        return [block_on("ln_sk", "fn_sk"), block_on("birth_date", "postcode")]
    return [block_on("ln_sk", "birth_date"), block_on("phone"), block_on("fn_sk", "mn_sk", "email")]


#: deterministic rules to estimate the prior probability that two records match
def prior_rules(profile: str = "ru") -> list:
    if profile == "hist":
        return [block_on("ln_sk", "fn_sk", "birth_date")]
    return [
        block_on("ln_sk", "fn_sk", "birth_date"),
        block_on("phone", "birth_date"),
        block_on("email", "ln_sk"),
    ]
