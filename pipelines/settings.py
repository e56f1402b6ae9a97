"""Where the project keeps its state, resolved from the three documented environment variables.

Every entry point (CLI, Dagster code location, tests) reads paths through this module so that
`CONSENT_HOME`, `CONSENT_LANDING_DIR` and `CONSENT_DATABASE_URL` mean the same thing everywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"


def dbt_executable() -> str:
    """The dbt installed next to this Python (a venv's bin/ is not always on PATH)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


@dataclass(frozen=True)
class Settings:
    home: Path
    landing_dir: Path
    database_url: str | None  # None: the embedded server under `home`

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def uses_embedded_server(self) -> bool:
        return self.database_url is None


def load_settings() -> Settings:
    """Read the environment now (not at import) so tests and the CLI can point elsewhere."""
    home = Path(os.environ.get("CONSENT_HOME") or ".consent-center").expanduser().resolve()
    landing = os.environ.get("CONSENT_LANDING_DIR")
    landing_dir = Path(landing).expanduser().resolve() if landing else home / "landing"
    return Settings(
        home=home,
        landing_dir=landing_dir,
        database_url=os.environ.get("CONSENT_DATABASE_URL") or None,
    )
