"""The generated catalog: consent types, wordings, product matrix, CRM flag map.

Two full snapshots are written: the initial one (batch id = history start) and a
later one (batch id = the change date) that closes ``ads_call``/``ads_sms``
wording v1, adds v2, ends the DEPOSIT -> ads_email matrix rule and adds new rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from . import truth

EPOCH = date(2015, 1, 1)  # wordings and rules older than any generated history


@dataclass(frozen=True)
class Product:
    system_code: str
    product_type: str
    product_name: str
    prefix: str  # contract number prefix: f"{prefix}-{year}-{n:09d}"
    weight: float


PRODUCTS: tuple[Product, ...] = (
    Product("MOBILE", "MOBILE_TARIFF", "Тариф мобильной связи", "MOB", 0.22),
    Product("MOBILE", "MOBILE_ESIM", "eSIM", "ESIM", 0.04),
    Product("INTERNET", "HOME_INTERNET", "Домашний интернет", "INT", 0.12),
    Product("TV", "IPTV", "Интерактивное ТВ", "TV", 0.07),
    Product("TV", "SAT_TV", "Спутниковое ТВ", "STV", 0.03),
    Product("LOANS", "LOAN", "Кредит наличными", "KR", 0.10),
    Product("LOANS", "MORTGAGE", "Ипотека", "KR-IP", 0.03),
    Product("CARDS", "CARD", "Кредитная карта", "CARD", 0.10),
    Product("CARDS", "DEBIT_CARD", "Дебетовая карта", "DC", 0.10),
    Product("DEPOSIT", "DEPOSIT", "Вклад", "DEP", 0.07),
    Product("INSURANCE", "INSURANCE_PROPERTY", "Страхование имущества", "POL", 0.07),
    Product("INSURANCE", "INSURANCE_LIFE", "Страхование жизни", "INS", 0.05),
)

PARTNERS: tuple[str, ...] = ("BETA", "GAMMA", "DELTA")
PARTNER_NAMES = {"BETA": "ООО «Бета»", "GAMMA": "АО «Гамма»", "DELTA": "ПАО «Дельта»"}

# (code, purpose, channel, partner_code, term_months, description)
CONSENT_TYPES: tuple[tuple[str, str, str, str, int, str], ...] = (
    ("pd_basic", "processing", "any", "", 120, "Обработка ПДн"),
    ("ads_call", "marketing", "call", "", 36, "Рекламные звонки"),
    ("ads_sms", "marketing", "sms", "", 36, "Рекламные SMS"),
    ("ads_email", "marketing", "email", "", 36, "Рекламные письма"),
    ("ads_messenger", "marketing", "messenger", "", 36, "Реклама в мессенджерах"),
    ("ads_push", "marketing", "push", "", 24, "Рекламные push-уведомления"),
    ("ads_post", "marketing", "post", "", 36, "Рекламная почтовая рассылка"),
    *(
        (
            f"share_{p.lower()}",
            "third_party_transfer",
            "any",
            p,
            60,
            f"Передача данных партнёру {PARTNER_NAMES[p]}",
        )
        for p in PARTNERS
    ),
)

TEXTS_V1 = {
    "pd_basic": "Даю согласие на обработку персональных данных в целях исполнения договора.",
    "ads_call": "Согласен на рекламные звонки.",
    "ads_sms": "Согласен получать рекламные SMS.",
    "ads_email": "Согласен получать рекламные письма.",
    "ads_messenger": "Согласен получать рекламу в мессенджерах.",
    "ads_push": "Согласен получать рекламные push-уведомления.",
    "ads_post": "Согласен получать рекламу по почте.",
    **{
        f"share_{p.lower()}": f"Согласен на передачу моих данных партнёру {PARTNER_NAMES[p]}."
        for p in PARTNERS
    },
}
TEXTS_V2 = {
    "ads_call": "Согласен получать рекламные звонки о товарах и услугах компании и партнёров.",
    "ads_sms": "Согласен получать рекламные SMS о товарах и услугах компании и партнёров.",
}

FLAG_MAP: tuple[tuple[str, str], ...] = (
    ("SMS_OK", "ads_sms"),
    ("CALL_OK", "ads_call"),
    ("MAIL_OK", "ads_email"),
    ("PUSH_OK", "ads_push"),
    ("MSG_OK", "ads_messenger"),
    ("POST_OK", "ads_post"),
    ("PD_OK", "pd_basic"),
)
MARKETING_FLAGS = tuple(f for f, c in FLAG_MAP if c.startswith("ads_"))
MARKETING_CODES = tuple(t[0] for t in CONSENT_TYPES if t[1] == "marketing")

# (rule_id, kind, value, code, version, term, effective_from, ends_at_change, starts_at_change)
_RULES = (
    ("M01", "system_code", "MOBILE", "pd_basic", "1", 120, False, False),
    ("M02", "system_code", "MOBILE", "ads_sms", "", 36, False, False),
    ("M03", "system_code", "INTERNET", "pd_basic", "1", 120, False, False),
    ("M04", "product_type", "HOME_INTERNET", "ads_email", "", 36, False, False),
    ("M05", "system_code", "TV", "pd_basic", "1", 120, False, False),
    ("M06", "product_type", "IPTV", "ads_push", "", 24, False, False),
    ("M07", "contract_mask", "KR-%", "pd_basic", "1", 120, False, False),
    ("M08", "contract_mask", "KR-%", "ads_call", "", 36, False, False),
    ("M09", "product_type", "CARD", "pd_basic", "1", 120, False, False),
    ("M10", "product_type", "CARD", "ads_call", "", 36, False, False),
    ("M11", "product_type", "DEBIT_CARD", "pd_basic", "1", 120, False, False),
    ("M12", "system_code", "DEPOSIT", "ads_email", "1", 36, True, False),
    ("M13", "system_code", "DEPOSIT", "pd_basic", "1", 120, False, False),
    ("M14", "system_code", "INSURANCE", "pd_basic", "1", 120, False, False),
    ("M15", "contract_mask", "POL-%", "ads_post", "", 24, False, False),
    ("M16", "system_code", "DEPOSIT", "ads_messenger", "", 36, False, True),
    ("M17", "contract_mask", "INS-%", "ads_email", "", 36, False, True),
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def change_date(start: date, end: date) -> date:
    """First day of the month at 55 % of the history window: wording and matrix change."""
    mid = start + timedelta(days=int((end - start).days * 0.55))
    return date(mid.year, mid.month, 1)


@dataclass(frozen=True)
class CatalogBatch:
    batch_id: str
    files: dict[str, tuple[tuple[str, ...], list[tuple[str, ...]]]]  # name -> (header, rows)


def _iso(d: date | None) -> str:
    return d.isoformat() if d else ""


def batches(start: date, end: date) -> list[CatalogBatch]:
    cd = change_date(start, end)
    before = cd - timedelta(days=1)
    out = []
    for later in (False, True):
        types = [(c, p, ch, pc, str(t), desc) for c, p, ch, pc, t, desc in CONSENT_TYPES]
        wordings = []
        for code in TEXTS_V1:
            changed = later and code in TEXTS_V2
            wordings.append(
                (
                    code,
                    "1",
                    EPOCH.isoformat(),
                    _iso(before if changed else None),
                    TEXTS_V1[code],
                    sha256(TEXTS_V1[code]),
                )
            )
            if changed:
                wordings.append(
                    (code, "2", cd.isoformat(), "", TEXTS_V2[code], sha256(TEXTS_V2[code]))
                )
        matrix = []
        for rid, kind, value, code, ver, term, ends, starts in _RULES:
            if starts and not later:
                continue
            eff_from = cd if starts else EPOCH
            eff_to = before if (ends and later) else None
            matrix.append(
                (rid, kind, value, code, ver, str(term), eff_from.isoformat(), _iso(eff_to))
            )
        files = {
            "consent_types.csv": (
                (
                    "consent_code",
                    "purpose",
                    "channel",
                    "partner_code",
                    "term_months",
                    "description",
                ),
                types,
            ),
            "wordings.csv": (
                (
                    "consent_code",
                    "wording_version",
                    "effective_from",
                    "effective_to",
                    "text",
                    "text_sha256",
                ),
                wordings,
            ),
            "product_matrix.csv": (
                (
                    "rule_id",
                    "match_kind",
                    "match_value",
                    "consent_code",
                    "wording_version",
                    "term_months",
                    "effective_from",
                    "effective_to",
                ),
                matrix,
            ),
            "crm_flag_map.csv": (("flag_code", "consent_code"), list(FLAG_MAP)),
        }
        out.append(CatalogBatch((cd if later else start).isoformat(), files))
    return out


def truth_catalog(batch: CatalogBatch) -> truth.Catalog:
    """The truth implementation's view of one snapshot (the newest one is in force)."""

    def d(s: str) -> date | None:
        return date.fromisoformat(s) if s else None

    f = batch.files
    types = {
        r[0]: truth.ConsentType(r[0], r[1], r[2], r[3], int(r[4]) if r[4] else None)
        for r in f["consent_types.csv"][1]
    }
    wordings = [truth.Wording(r[0], r[1], d(r[2]), d(r[3]), r[5]) for r in f["wordings.csv"][1]]
    rules = [
        truth.MatrixRule(
            r[0], r[1], r[2], r[3], r[4] or None, int(r[5]) if r[5] else None, d(r[6]), d(r[7])
        )
        for r in f["product_matrix.csv"][1]
    ]
    return truth.Catalog(types, wordings, rules, dict(f["crm_flag_map.csv"][1]))
