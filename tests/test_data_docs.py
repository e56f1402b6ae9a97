"""Data Docs: built on every validation run, and the index shows every suite in a real browser.

With chromium (Debian: `apt-get install chromium`) the index is rendered headless and the
rendered DOM is checked; without it the built HTML itself is parsed: the test never passes
without checking the suites.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest

from expectations.rules import MODELS
from expectations.suites import suite_name
from tests.conftest import EXAMPLES, fresh_database, load_and_stage


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def docs(server_url, tmp_path_factory) -> Path:
    """The example landing zone staged and validated; returns CONSENT_HOME/reports."""
    from expectations.validate import validate_forms

    home = tmp_path_factory.mktemp("home")
    with fresh_database(server_url) as url, psycopg.connect(url, autocommit=True) as conn:
        load_and_stage(url, EXAMPLES, select="path:models/staging")
        report = validate_forms(conn, home, home / "reports", url)
        assert report.data_docs_index == home / "reports" / "data_docs" / "index.html"
    return home / "reports"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _rendered_dom(index: Path, tmp_path: Path) -> str | None:
    browser = _chromium()
    if browser is None:
        return None
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            index.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_data_docs_index_shows_every_suite(docs, tmp_path):
    index = docs / "data_docs" / "index.html"
    assert index.exists()
    dom = _rendered_dom(index, tmp_path)
    page = _Text()
    page.feed(dom if dom is not None else index.read_text(encoding="utf-8"))
    text = " ".join(page.parts)
    for model in MODELS:
        assert suite_name(model) in text, f"suite {suite_name(model)} not on the index"
    # and each suite's own page was built next to it
    for model in MODELS:
        assert (index.parent / "expectations" / model / "forms.html").exists(), model


def test_screenshot_of_the_index_when_chromium_is_present(docs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed: the rendered-page check above parsed the HTML")
    shot = tmp_path / "index.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1280,900",
            f"--screenshot={shot}",
            (docs / "data_docs" / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank image


def test_dpo_summary_page_names_no_personal_data(docs):
    page = (docs / "dq_summary.html").read_text(encoding="utf-8")
    assert "Data-quality summary" in page and 'href="data_docs/index.html"' in page
