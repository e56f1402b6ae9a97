"""splink's dashboards hold personal data: never in a run, 0600 on demand, gone on erasure.

The worked example (tests/fixtures/landing) is loaded and staged with a real dbt; identity
resolution runs as the pipeline runs it (run_identity_resolution, the asset's function) into a
CONSENT_HOME that an older version left a world-readable comparison viewer and cluster studio
in. Then the DPO command `consent-center identity-report` runs as a subprocess, and the
depersonalisation asset executes an erase request through Dagster.
"""

from __future__ import annotations

import csv
import json
import re
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from dagster import materialize

from assets.depersonalisation import depersonalisation
from assets.identity.assets import run_identity_resolution
from assets.identity.charts import DASHBOARD_FILES
from pipelines.resources import ConsentCenterResource
from tests.cli_runs import cli_env, run_cli
from tests.conftest import EXAMPLES, fresh_database, load_and_stage


def personal_values(landing: Path) -> set[str]:
    """Every passport and phone of the landing zone, as written and as digits only."""
    values: set[str] = set()
    for path in landing.glob("*/*/*.csv"):
        # generated feeds carry broken bytes on purpose: read past them
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            for row in csv.DictReader(handle):
                for column in ("passport", "phone", "passport_number"):
                    value = (row.get(column) or "").strip()
                    digits = re.sub(r"\D", "", value)
                    if len(digits) >= 8:
                        values |= {value, digits, "+7" + digits[1:]}
    for path in landing.glob("web/*/*.jsonl"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                text = json.dumps(json.loads(line), ensure_ascii=False)
            except ValueError:
                text = line
            for found in re.findall(r'"phone": ?"([^"]+)"', text):
                digits = re.sub(r"\D", "", found)
                if len(digits) >= 8:
                    values |= {found, digits}
    return values


# the characters a passport or a phone is written with: every value personal_values finds is
# made of them, so in a file it can only lie inside a run of them
_NUMBERISH = re.compile(r"[0-9+()\- ]{8,}")
_SHORT_SPAN = 64


def _values_in(text: str, plain: set[str], other: set[str]) -> set[str]:
    """The values found in `text`: a plain (numberish) value inside one of its numberish runs,
    looked up by the run's substrings (a run is short: a phone, a passport, a date), and any
    other value by a search of the whole text."""
    found = {value for value in other if value in text}
    for span in set(_NUMBERISH.findall(text)):
        if len(span) > _SHORT_SPAN:
            found |= {value for value in plain if value in span}
            continue
        windows = {span[i:j] for i in range(len(span)) for j in range(i + 8, len(span) + 1)}
        found |= windows & plain
    return found


def files_with(folder: Path, values: set[str]) -> dict[str, int]:
    """file -> how many of `values` it contains, for every file under folder."""
    plain = {value for value in values if _NUMBERISH.fullmatch(value)}
    other = values - plain
    hits = {}
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="ignore")
            found = len(_values_in(text, plain, other))
            if found:
                hits[str(path.relative_to(folder))] = found
    return hits


@pytest.fixture(scope="module")
def setup(server_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("identity-reports")
    home = root / "home"
    stale = home / "reports" / "identity"
    stale.mkdir(parents=True)
    for name in DASHBOARD_FILES:  # as an older version left them: world-readable
        (stale / name).write_text("<html>4612 345678 +79035551234</html>", encoding="utf-8")
        (stale / name).chmod(0o644)
    with fresh_database(server_url) as url:
        load_and_stage(url, EXAMPLES)
        resource = ConsentCenterResource(
            home=str(home), landing_dir=str(EXAMPLES), database_url=url
        )
        result = run_identity_resolution(resource)
        # what the run left, read now: the tests below add the DPO command's dashboards
        after_run = {
            "stale_left": [n for n in DASHBOARD_FILES if (stale / n).exists()],
            "personal_hits": files_with(home / "reports", personal_values(EXAMPLES)),
        }
        env = cli_env(home, EXAMPLES, url, columns="200")
        yield {
            "home": home,
            "url": url,
            "resource": resource,
            "result": result,
            "env": env,
            "after_run": after_run,
        }


def identity_report(env: dict, *args: str) -> subprocess.CompletedProcess:
    return run_cli(env, "identity-report", *args, timeout=600)


def test_the_worked_example_has_passports_and_phones_to_look_for():
    values = personal_values(EXAMPLES)
    assert {"4612 345678", "4612345678", "+79035551234"} <= values


def test_a_run_writes_only_the_model_charts_and_removes_stale_dashboards(setup):
    names = {Path(p).name for p in setup["result"]["charts"]}
    assert names == {"match_weights.html", "m_u_parameters.html"}
    assert all((setup["home"] / "reports" / "identity" / n).exists() for n in names)
    assert setup["after_run"] == {"stale_left": [], "personal_hits": {}}


def test_the_dpo_command_writes_the_dashboards_private(setup):
    home, env = setup["home"], setup["env"]
    done = identity_report(env)
    folder = home / "reports" / "identity-report"
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(DASHBOARD_FILES)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in written:
        path = folder / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_size > 1000
        assert str(path) in done.stdout
    # they are what the run must not write: raw records
    hits = files_with(folder, personal_values(EXAMPLES))
    assert hits.get("comparison_viewer.html", 0) > 0
    # and no personal value on the terminal
    assert not any(v in done.stdout + done.stderr for v in personal_values(EXAMPLES))


def test_the_dpo_command_writes_where_it_is_told(setup, tmp_path):
    out = tmp_path / "review"
    identity_report(setup["env"], "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(DASHBOARD_FILES)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    setup["elsewhere"] = out


def test_an_erasure_removes_every_dashboard(setup, tmp_path):
    home, url = setup["home"], setup["url"]
    out = setup.get("elsewhere") or tmp_path / "review"
    if not out.exists():
        identity_report(setup["env"], "--out", str(out))
    identity_report(setup["env"])
    default = home / "reports" / "identity-report"
    assert default.exists() and all((out / n).exists() for n in DASHBOARD_FILES)
    with psycopg.connect(url, autocommit=True) as conn:
        (viktor,) = conn.execute(
            "select client_id from consent.client_xref where source = 'crm' "
            "and source_record_id = 'K-2'"
        ).fetchone()
        # the report dbt builds (report_depersonalisation), reduced to one due request
        conn.execute(
            "create table consent.report_depersonalisation (client_id text, request_ids "
            "text[], received_at timestamptz, allowed_from timestamptz, state text, "
            "executed_at timestamptz)"
        )
        conn.execute(
            "insert into consent.report_depersonalisation values "
            "(%s, array['HD-10'], now() - interval '30 days', now() - interval '1 day', "
            "'due', null)",
            (viktor,),
        )
    result = materialize([depersonalisation], resources={"consent_center": setup["resource"]})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["clients_executed"].value == 1
    assert event.materialization.metadata["identity_report_files_removed"].value == 4
    assert not default.exists()
    assert not any((out / n).exists() for n in DASHBOARD_FILES)
    # the model charts hold no personal data and stay
    assert (home / "reports" / "identity" / "match_weights.html").exists()


def test_the_personal_value_search_finds_what_a_plain_search_finds(tmp_path):
    """files_with (used by every "no personal data under reports" check) agrees with the
    obvious search, value by value, on text where the values sit inside longer runs."""
    values = {"4612 345678", "4612345678", "+79035551234", "89035551234", "Иванов 1"}
    (tmp_path / "a.csv").write_text("id,note\n1,passport 4612 345678.\n2,x89035551234 7\n")
    (tmp_path / "b.html").write_text("<td>+7903555123</td><td>Иванов 1</td>" + "1 " * 100)
    (tmp_path / "c.txt").write_text("phones: +79035551234 4612345678 2024-01-01 " * 3)
    expected = {}
    for path in tmp_path.iterdir():
        text = path.read_text()
        if found := sum(value in text for value in values):
            expected[path.name] = found
    assert files_with(tmp_path, values) == expected == {"a.csv": 2, "b.html": 1, "c.txt": 2}
