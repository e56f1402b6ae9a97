"""Configuration and summary dataclasses of the synthetic feed generator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date


@dataclass(frozen=True)
class NoiseRates:
    """One probability per kind of noise, applied where the kind makes sense.

    Rates are per record (or per field where stated) of the records a kind applies to.
    """

    typo: float = 0.03  # one keyboard typo in a surname or first name
    initials: float = 0.35  # helpdesk fio written "Иванов И.П."
    swapped_names: float = 0.02  # first and last name swapped
    upper_case: float = 0.10  # names in capitals
    yo_to_e: float = 0.5  # ё written as е (where the name has ё)
    latin_web: float = 0.4  # web person names in Latin transliteration
    latin_partner: float = 0.2  # partner names in Latin transliteration
    phone_format: float = 0.6  # phone not written as +7XXXXXXXXXX
    missing_field: float = 0.08  # each optional field (middle name, e-mail, passport...) empty
    stale_contact: float = 0.05  # record carries an out-of-date phone or e-mail
    crm_duplicate: float = 0.03  # the same person created twice in the CRM
    date_swap: float = 0.01  # birth date day and month swapped (where both <= 12)
    namesake: float = 0.03  # a new person reuses the full name of another person


@dataclass(frozen=True)
class GeneratorConfig:
    clients: int
    seed: int = 1
    batches: int = 3
    start: date = date(2019, 1, 1)
    end: date = date(2024, 12, 31)
    bad_row_rate: float = 0.002
    noise: NoiseRates = field(default_factory=NoiseRates)
    # questions in truth/expected_status.csv: share of persons asked, and a hard cap
    question_rate: float = 0.2
    max_questions: int = 200_000
    chunk_size: int = 10_000

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError("clients must be at least 1")
        if self.batches < 1:
            raise ValueError("batches must be at least 1")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).days < 365:
            raise ValueError("the history window must span at least a year")
        if not 0 <= self.bad_row_rate < 0.5:
            raise ValueError("bad_row_rate must be in [0, 0.5)")


@dataclass
class GenerationSummary:
    out_dir: str
    clients: int
    seed: int
    files: dict[str, int] = field(default_factory=dict)  # "source/batch/file" -> data rows
    sources: dict[str, int] = field(default_factory=dict)  # source -> data rows
    truth: dict[str, int] = field(default_factory=dict)  # truth file -> rows
    bad_rows: int = 0
    elapsed_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)
