"""The `consent-center` command, for the people who do not live in the Dagster UI.

Every command reads CONSENT_HOME, CONSENT_LANDING_DIR and CONSENT_DATABASE_URL; every error is
one clear line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.settings import PROJECT_ROOT, load_settings

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - a typer that uses click itself
    from click import exceptions as click_errors

app = typer.Typer(
    help="consent-center: may we contact this person now, and why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# bound to the real streams: `run` sends Dagster's and dbt's chatter to a log file meanwhile
console = Console(file=sys.stdout)
err_console = Console(file=sys.stderr)

SAMPLE_CLIENTS = 2_000


class CommandError(Exception):
    """An expected failure: shown as one line, exit code 1."""


def _fail(message: str, code: int = 1) -> None:
    # soft_wrap: one line whatever the terminal's width (a long path must not break it in two)
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _landing_is_empty(landing: Path) -> bool:
    return not landing.exists() or not any(landing.glob("*/*/_SUCCESS"))


@app.command()
def run(
    full_refresh: bool = typer.Option(
        False,
        "--full-refresh",
        help="Re-derive everything from the loaded batches, taking nothing over from the "
        "previous run (every record's identity scored again). It publishes exactly what the "
        "daily runs did.",
    ),
    rederive: bool = typer.Option(
        False,
        "--rederive",
        help="Derive every client again from every loaded batch, keeping identity as resolved "
        "(a daily run derives only the clients its changes reach).",
    ),
) -> None:
    """Load every complete batch not yet processed, then build everything downstream.

    One run at a time: beside a run in progress (another `run`, or a run the schedule, the
    sensor or the UI started) it does not start, and says which run that is.
    """
    from rich.markup import escape

    from pipelines.database import database_url
    from pipelines.resources import RunInProgress, run_lock

    settings = load_settings()
    url = database_url(settings)
    try:
        # held from before the landing zone is looked at (sample data included) to the summary
        with run_lock(url, "consent-center run"):
            _check_landing_zone(settings, url)
            _run_and_summarise(settings, full_refresh, rederive)
    except RunInProgress as error:
        _fail(escape(str(error)))


def _check_landing_zone(settings, url: str) -> None:
    """Sample data only for a database that never registered a batch (DESIGN section 9).

    On an installation with history, an empty landing zone (files archived, a share not
    mounted on its mount point) loads nothing and says so; a missing one is an error.
    """
    import psycopg
    from rich.markup import escape

    from pipelines.run import registered_batches

    landing = settings.landing_dir
    if not _landing_is_empty(landing):
        return
    with psycopg.connect(url, autocommit=True) as conn:
        history = registered_batches(conn)
    if history:
        if not landing.is_dir():
            _fail(
                escape(
                    f"the landing zone {landing} does not exist, but this database has "
                    f"registered {history:,} batches: is the share mounted? nothing was run"
                )
            )
        err_console.print(
            escape(
                f"warning: no complete batch under {landing}: nothing new to load "
                f"({history:,} batches registered before; sample data is only generated for a "
                "database that never loaded one)"
            ),
            highlight=False,
            soft_wrap=True,
        )
        return
    if os.environ.get("CONSENT_LANDING_DIR"):
        _fail(escape(f"no complete batch (with _SUCCESS) under {landing}"))
    console.print(
        f"Landing zone {landing} is empty: generating sample feeds "
        f"for {SAMPLE_CLIENTS} clients first.",
        highlight=False,
        markup=False,
    )
    _generate(landing, SAMPLE_CLIENTS, seed=1, batches=3)


def _run_and_summarise(settings, full_refresh: bool = False, rederive: bool = False) -> None:
    from pipelines.run import run_pipeline

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def on_total(total: int) -> None:
            progress.update(task, total=total)

        def on_step(description: str) -> None:
            if progress.tasks[0].description != "starting":
                progress.advance(task)
            progress.update(task, description=description)

        summary = run_pipeline(
            settings,
            on_step=on_step,
            on_total=on_total,
            full_refresh=full_refresh,
            rederive=rederive,
        )
        progress.advance(task)

    table = Table(title="consent-center run", show_header=False)
    table.add_row("batches loaded", str(summary.batches_loaded))
    table.add_row("batches failed", str(len(summary.batches_failed)))
    table.add_row("rows read", f"{summary.rows_read:,}")
    table.add_row("rows loaded", f"{summary.rows_loaded:,}")
    table.add_row("rows rejected", f"{summary.rows_rejected:,} (see consent.dq_rejections)")
    table.add_row(
        "full refresh" if summary.full_refresh else "transform",
        "ok" if summary.transform_ok else "FAILED",
    )
    if summary.derived:
        table.add_row("derived", summary.derived)
    table.add_row("as of", f"{summary.as_of} (CONSENT_NOW, else the real now)")
    table.add_row("duration", f"{summary.seconds:.1f} s")
    table.add_row("run log", str(summary.log_file))
    # issue 6: where the data-quality reports are (built by quality/form_validation)
    data_docs = settings.reports_dir / "data_docs" / "index.html"
    dq_summary = settings.reports_dir / "dq_summary.html"
    if data_docs.exists():
        table.add_row("data docs", str(data_docs))
    if dq_summary.exists():
        table.add_row("DPO summary", f"{dq_summary} (and view consent.dq_summary)")
    console.print(table)
    for failure in summary.failures:
        err_console.print(f"[red]failed:[/] {failure}", highlight=False)
    if not summary.ok:
        raise typer.Exit(1)


def _generate(out: Path, clients: int, seed: int, batches: int) -> dict:
    from sources.generator import GeneratorConfig, generate

    with Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("clients", total=clients)
        summary = generate(
            out,
            GeneratorConfig(clients=clients, seed=seed, batches=batches),
            progress=lambda done: progress.update(task, completed=done),
        )
    return summary.as_dict()


@app.command()
def generate(
    clients: Annotated[int, typer.Option(help="How many real people to simulate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 1,
    out: Annotated[
        Path | None, typer.Option(help="Landing zone to write (default: CONSENT_LANDING_DIR).")
    ] = None,
    batches: Annotated[int, typer.Option(help="Batches per source feed.")] = 3,
) -> None:
    """Write synthetic feeds of all five sources with the truth behind them (DIR/truth/)."""
    target = out or load_settings().landing_dir
    if clients < 1:
        _fail("--clients must be at least 1")
    summary = _generate(target, clients, seed, batches)
    console.print(
        f"wrote feeds for {clients:,} clients to {target} "
        f"in {summary.get('elapsed_seconds', 0):.1f} s; truth in {target / 'truth'}"
    )


@app.command("can-contact")
def can_contact(
    source: Annotated[str, typer.Option(help="crm, web, helpdesk or partner.")],
    record: Annotated[str, typer.Option(help="The record id in that source.")],
    purpose: Annotated[str, typer.Option(help="processing, marketing, ...")],
    channel: Annotated[str, typer.Option(help="call, sms, email, messenger, push or post.")],
    at: Annotated[
        str | None, typer.Option(help="ISO instant (naive = Moscow); default now.")
    ] = None,
    partner: Annotated[str, typer.Option(help="Partner code, for partner-specific consents.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """May the company contact this person now (or at --at), and why."""
    import json

    from pipelines.answers import AnswerError, parse_instant
    from pipelines.answers import can_contact as ask
    from pipelines.database import connect

    try:
        instant = parse_instant(at)
        with connect() as conn:
            answer = ask(conn, source, record, purpose, channel, instant, partner)
    except AnswerError as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(answer.as_dict(), ensure_ascii=False))
        return
    verdict = "[bold green]YES[/]" if answer.allowed else "[bold red]NO[/]"
    console.print(
        f"{verdict} {answer.purpose}/{answer.channel} for client {answer.client_id} "
        f"at {answer.at}: {answer.status}"
        + (
            f" (since {answer.valid_from}"
            + (f", until {answer.valid_to})" if answer.valid_to else ")")
            if answer.valid_from
            else ""
        ),
        highlight=False,
    )
    for basis in answer.basis:
        console.print(
            f"  {basis.action:<8} {basis.effective_at}  {basis.source}:{basis.source_record_id}  "
            f"{basis.detail or ''}  [{basis.evidence_level}] "
            f"{basis.evidence_url or 'no evidence url'}"
            f"  ({basis.event_id})",
            highlight=False,
        )


@app.command()
def segment(
    file: Annotated[Path, typer.Argument(help="CSV with source,source_record_id or client_id.")],
    purpose: Annotated[str, typer.Option(help="processing, marketing, ...")],
    channel: Annotated[str, typer.Option(help="call, sms, email, messenger, push or post.")],
    at: Annotated[
        str | None, typer.Option(help="ISO instant (naive = Moscow); default now.")
    ] = None,
    partner: Annotated[str, typer.Option(help="Partner code, for partner-specific consents.")] = "",
    out: Annotated[Path | None, typer.Option(help="Write the per-record list here (CSV).")] = None,
) -> None:
    """How many people of a list may be contacted, and the list itself (CSV)."""
    from pipelines.answers import AnswerError, parse_instant, write_segment_list
    from pipelines.answers import segment as check_segment
    from pipelines.database import connect

    try:
        instant = parse_instant(at)
        with connect() as conn:
            result = check_segment(conn, file, purpose, channel, instant, partner)
            if out:
                with open(out, "wb") as handle:
                    write_segment_list(conn, handle)
            else:
                write_segment_list(conn, sys.stdout.buffer)
                sys.stdout.flush()
    except AnswerError as error:
        _fail(str(error))
    summary = ", ".join(f"{name} {count:,}" for name, count in result.counts.items())
    err_console.print(
        f"{result.total:,} records, {purpose}/{channel} at {result.at}: {summary}"
        + (f"; list in {out}" if out else ""),
        highlight=False,
    )


@app.command("train-identity")
def train_identity() -> None:
    """Retrain the splink person model on the staged records (the Dagster job train_identity).

    The model is saved as $CONSENT_HOME/identity/person_model.json and used by every later run.
    """
    from pipelines.database import database_url
    from pipelines.run import QUIET_RUN_CONFIG, _run_error, prepare_dagster_home

    settings = load_settings()
    prepare_dagster_home(settings)
    database_url(settings)
    logging.getLogger("splink").setLevel(logging.ERROR)  # EM's "level not observed" notes
    from dagster import DagsterInstance

    from pipelines.definitions import defs

    job = defs.resolve_job_def("train_identity")
    result = job.execute_in_process(
        instance=DagsterInstance.get(), run_config=QUIET_RUN_CONFIG, raise_on_error=False
    )
    if not result.success:
        _fail(f"train_identity: {_run_error(result)}")
    (event,) = result.get_asset_materialization_events()
    meta = {key: value.value for key, value in event.materialization.metadata.items()}
    console.print(
        f"person model trained on {meta['records']:,} records in {meta['seconds']} s: "
        f"{meta['path']} (charts in {settings.reports_dir / 'identity'})",
        highlight=False,
    )


@app.command("identity-report")
def identity_report(
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write (default: $CONSENT_HOME/reports/identity-report)."),
    ] = None,
) -> None:
    """Write splink's comparison viewer and cluster studio for the DPO (personal data, 0600).

    Every staged record is scored again with the active model; the clusters are the published
    ones. No run writes these files, and every erasure deletes them.
    """
    from assets.identity.review import write_identity_report
    from pipelines.database import database_url
    from pipelines.resources import ConsentCenterResource

    settings = load_settings()
    logging.getLogger("splink").setLevel(logging.ERROR)
    resource = ConsentCenterResource(
        home=str(settings.home),
        landing_dir=str(settings.landing_dir),
        database_url=database_url(settings),
    )
    try:
        info = write_identity_report(resource, out)
    except ValueError as error:
        _fail(str(error))
    console.print(
        f"identity report over {info['records']:,} records ({info['pairs']:,} scored pairs), "
        "personal data, readable by you only (0600):",
        highlight=False,
    )
    for path in info["files"]:
        console.print(f"  {path}", highlight=False, soft_wrap=True)


@app.command("catalog-preview")
def catalog_preview(
    folder: Annotated[Path, typer.Argument(help="A candidate catalog batch folder.")],
) -> None:
    """Dry run of a catalog change: which clients would gain or lose which consent."""
    from pipelines.catalog_preview import preview_catalog
    from pipelines.database import database_url
    from sources.readers import BatchFileError

    settings = load_settings()
    try:
        preview = preview_catalog(database_url(settings), folder, settings.reports_dir)
    except BatchFileError as error:
        _fail(str(error))
    table = Table(title=f"catalog preview {folder.name}: {preview.clients_affected:,} clients")
    table.add_column("consent")
    table.add_column("keys", justify="right")
    for change, count in preview.changes.items():
        table.add_row(change, f"{count:,}")
    console.print(table)
    console.print(f"per-client changes: {preview.diff_file}")


@app.command("db-url")
def db_url() -> None:
    """Print the database URL (starting the embedded server if needed) for psql and BI tools."""
    from pipelines.database import database_url

    print(database_url())


@app.command()
def grant(
    role: Annotated[str, typer.Option(help="consent_analyst, consent_marketing or consent_dpo.")],
    login: Annotated[str, typer.Option(help="The person's database login (created if missing).")],
) -> None:
    """Grant a reader role to a person's database login (created, with a password, if missing).

    A new login's password is printed once, alone on the last line, and stored only as a hash.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from assets.access import AccessError, grant_role_to_login
    from pipelines.database import database_url

    url = database_url()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            password = grant_role_to_login(conn, role, login)
    except AccessError as error:
        from rich.markup import escape

        _fail(escape(str(error)))
    params = {k: v for k, v in conninfo_to_dict(url).items() if k != "password"}
    params["user"] = login
    where = make_conninfo(**params)
    if password is None:
        console.print(
            f"granted {role} to the existing login {login} ({where})", highlight=False, markup=False
        )
        return
    console.print(
        f"created login {login} with {role}; connect with: {where} and the password below "
        "(shown once, not stored)",
        highlight=False,
        markup=False,
    )
    print(password)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (CONSENT_API_HOST; 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (CONSENT_API_PORT; 8400).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (CONSENT_API_WORKERS; 1).")
    ] = None,
) -> None:
    """Serve the consent API (OpenAPI at /openapi.json, docs at /docs); SIGTERM stops it
    gracefully."""
    from pipelines.api.server import serve as serve_api
    from pipelines.database import database_url

    settings = load_settings()
    serve_api(settings, database_url(settings), host, port, workers)


api_key_app = typer.Typer(help="API keys for `serve`: create, list, revoke.", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option(help="Who uses the key (a system or a person).")],
    role: Annotated[str, typer.Option(help="system, marketing or dpo.")],
) -> None:
    """Create a key; it is printed once, alone on the last line, and stored only as a hash."""
    from pipelines.api.keys import ApiKeyError, create_key
    from pipelines.database import connect

    try:
        with connect(autocommit=True) as conn:
            key = create_key(conn, name, role)
    except ApiKeyError as error:
        _fail(escape(str(error)))
    console.print(
        f"created API key {name} with role {role}; it is shown once, below (only its hash is kept)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    print(key)


@api_key_app.command("list")
def api_key_list() -> None:
    """The keys: name, role, created, revoked (never the key)."""
    from pipelines.api.keys import list_keys
    from pipelines.database import connect

    with connect(autocommit=True) as conn:
        keys = list_keys(conn)
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "in use"
        print(f"{key.name}\t{key.role}\tcreated {key.created_at:%Y-%m-%d %H:%M}\t{state}")


@api_key_app.command("revoke")
def api_key_revoke(name: Annotated[str, typer.Option(help="The key's name.")]) -> None:
    """Revoke a key: refused within seconds (the server's key cache)."""
    from pipelines.api.keys import ApiKeyError, revoke_key
    from pipelines.database import connect

    try:
        with connect(autocommit=True) as conn:
            revoke_key(conn, name)
    except ApiKeyError as error:
        _fail(escape(str(error)))
    console.print(f"revoked API key {name}", highlight=False, markup=False)


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server of this CONSENT_HOME."""
    from pipelines.database import stop_embedded_server

    settings = load_settings()
    if not settings.uses_embedded_server:
        _fail("CONSENT_DATABASE_URL is set: there is no embedded server to stop")
    stopped = stop_embedded_server(settings)
    console.print(
        "embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running"
    )


@app.command()
def ui(port: Annotated[int, typer.Option(help="Port of the web UI.")] = 3000) -> None:
    """Start the Dagster web UI (with its daemon: sensor and schedule) on this project."""
    from pipelines.database import database_url
    from pipelines.run import prepare_dagster_home

    settings = load_settings()
    prepare_dagster_home(settings)
    database_url(settings)  # start the embedded server before the UI's first sensor tick
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    console.print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(command, cwd=PROJECT_ROOT))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    try:
        # not standalone: click's usage errors come back here, to be printed as one line
        # (standalone, typer draws them in a five-line box)
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as error:
        # `consent-center` alone: the help, as before (it is not an error message)
        error.show()
        sys.exit(error.exit_code)
    except click_errors.UsageError as error:
        sys.exit(_usage_error(error))
    except click_errors.ClickException as error:
        err_console.print(
            f"[bold red]error:[/] {escape(_one_line(error.format_message()))}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(error.exit_code)
    except typer.Abort:
        err_console.print("[bold red]error:[/] aborted", highlight=False)
        sys.exit(1)
    except (CommandError, OSError, ValueError, RuntimeError) as error:
        if os.environ.get("CONSENT_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        err_console.print(f"[bold red]error:[/] {message}", highlight=False)
        sys.exit(1)
    # a command's typer.Exit(code) comes back as its code; a command that returns, as None
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _usage_error(error: click_errors.UsageError) -> int:
    """A usage error (missing or unknown option, bad value, unknown command): one line, exit 2."""
    where = error.ctx.command_path if error.ctx is not None else "consent-center"
    err_console.print(
        f"[bold red]error:[/] {escape(_one_line(error.format_message()))} "
        f"(see '{escape(where)} --help')",
        highlight=False,
        soft_wrap=True,
    )
    return error.exit_code


if __name__ == "__main__":
    main()
