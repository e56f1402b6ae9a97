"""Consistent publishing (DESIGN section 12): readers see one complete run, never a half-built one.

A run builds everything it derives into schemas of its own, a *generation* named after the
Dagster run (`consent__g<id>` for identity, events, history, golden consent and the reports,
`staging__g<id>` for the intermediate models they are made of). Nothing a reader uses is
touched while it builds: dbt may drop and recreate its tables there at will, a failed model or
test simply leaves the generation unpublished, and the previous state stays in place with its
grants.

The published names in schema `consent` are views (`consent.golden_consent` is
`select * from consent__g<id>.golden_consent`, and so on) and `consent.consent_status_at` is a
function calling the generation's own. Publishing a generation is one transaction: the change
feed rows (the new golden_consent against the one published so far), every view and the function
repointed, the grants re-applied, and a row in `consent.publication`. A reader's statement sees
the old generation or the new one, whole; `create or replace view` keeps the view, its grants
and any view of the users' own built on it. The previous generation is dropped afterwards; a
reader still inside it keeps it until its query ends (the drop waits a few seconds for its lock,
else the next publication drops it).

A run that builds only some of the generation (an asset materialised alone in the UI) publishes
nothing it did not build: identity tables it did not resolve are taken over from the published
generation (its consent models were derived from them), and a generation missing a consent
model is refused.

Built by hand (`dbt build` without the var `build_generation`), the models go to `staging` and
`consent` directly, as before: that is how the tests of the models and the catalog preview
(`consent_preview`) build. The first publication replaces whatever such a build left in
`consent` with the views.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import psycopg
from dagster import DagsterError
from psycopg import sql

from pipelines.api.tables import ensure_api_tables, ensure_pending_view
from pipelines.overlay import (
    GOLDEN_CONSENT_VIEW,
    PENDING_KEYS_FUNCTION,
    PENDING_KEYS_GRANTS,
    overlaid,
    pending_covering,
)
from pipelines.resources import pause_point
from sources.schema import relation_exists

log = logging.getLogger(__name__)

PUBLISHED_SCHEMA = "consent"
#: identity resolution's outputs (assets/identity), written into the generation by Python
IDENTITY_TABLES = ("client_xref", "golden_client", "identity_ambiguous_matches")
#: intermediate relations the answering layer reads (pipelines/answers.py), published under
#: an internal name: the grants holding a granted consent open, by concrete key
INTERNAL_POINTERS = {"consent_key_event": "int_consent_key_events"}
GENERATION_PATTERN = re.compile(r"^g[0-9a-f]{8,32}$")
GENERATION_SCHEMA = re.compile(r"^(staging|consent)__(g[0-9a-f]{8,32})$")
#: how long dropping a retired generation, or one attempt at taking the published views, waits
#: for a reader: less than PostgreSQL's deadlock_timeout (1 s), so that the publication gives
#: way before a reader could be cancelled (see _lock_published)
RETIRE_LOCK_TIMEOUT = "200ms"
LOCK_ATTEMPT_TIMEOUT = "200ms"
LOCK_ATTEMPTS = 150

PUBLICATION_DDL = """
create schema if not exists consent;
create table if not exists consent.publication (
    generation   text primary key,
    run_id       text,
    as_of        timestamptz,
    published_at timestamptz not null default clock_timestamp(),
    changes      bigint not null default 0
);
comment on table consent.publication is
    'Every published generation (one per run): what consent.* showed from published_at on.';
alter table consent.publication
    add column if not exists stored_in text,
    add column if not exists derivation text,
    add column if not exists affected_clients bigint,
    add column if not exists derivation_reason text;
comment on column consent.publication.stored_in is
    'The generation whose tables hold this state: the run''s own after a full derivation, the '
    'published one, updated in place, after an incremental one.';
"""

# The generation's status, with the revocations received through the API and not yet folded
# into consent_event overlaid fail-safe (pipelines/overlay.py, the one owner of that rule).
STATUS_FUNCTION = (
    """
create or replace function consent.consent_status_at(
    p_client_id text, p_purpose text, p_channel text, p_partner_code text, p_at timestamptz
) returns table (status text, valid_from timestamptz, valid_to timestamptz, basis_event_id text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $fn$
    select """
    + overlaid(status="d.status", valid_from="d.valid_from", valid_to="d.valid_to",
               basis="d.basis_event_id").replace("{", "{{").replace("}", "}}")
    + """
    from {}.consent_status_at(p_client_id, p_purpose, p_channel, p_partner_code, p_at) d
    left join lateral ("""
    + pending_covering(client="p_client_id", at="p_at", purpose="p_purpose",
                       channel="p_channel").replace("{", "{{").replace("}", "}}")
    + """) r on true
$fn$
"""
)  # fmt: skip
# the generation's schemas are the owner's alone, hence security definer; so only the roles that
# may read consent_history may call it (PostgreSQL lets PUBLIC execute a new function)
STATUS_FUNCTION_GRANTS = """
revoke all on function consent.consent_status_at(text, text, text, text, timestamptz) from public;
grant execute on function consent.consent_status_at(text, text, text, text, timestamptz)
    to consent_dpo, consent_analyst;
"""
STATUS_FUNCTION_COMMENT = (
    "comment on function consent.consent_status_at(text, text, text, text, timestamptz) is "
    "'Status (granted, revoked, expired, restricted or none) of a consent key at an instant, "
    "with the interval and its basis event.'"
)


#: readers whose answer takes several statements (pipelines/answers.py) hold this lock shared
#: for their transaction; a publication takes it exclusively for the moment of its swap, so such
#: an answer reads one generation from its first statement to its last
READERS_LOCK = "consent-center:published-state"
READERS_LOCK_SQL = "select pg_advisory_xact_lock_shared(hashtext(%s))"


@contextlib.contextmanager
def one_publication(conn: psycopg.Connection) -> Iterator[None]:
    """Inside: every statement on `conn` reads the same publication (waits out a swap)."""
    with conn.transaction():
        conn.execute(READERS_LOCK_SQL, (READERS_LOCK,))
        yield


class PublicationError(RuntimeError):
    """A generation that cannot be published (one line, no personal data)."""


@dataclass(frozen=True)
class Generation:
    """The schemas one run builds into."""

    name: str

    def __post_init__(self) -> None:
        if not GENERATION_PATTERN.fullmatch(self.name):
            raise ValueError(f"not a generation name: {self.name!r}")

    @classmethod
    def of_run(cls, run_id: str) -> Generation:
        return cls("g" + run_id.replace("-", "")[:12].lower())

    @property
    def suffix(self) -> str:
        """dbt's var `build_generation` gives the schema suffix (macros/generate_schema_name)."""
        return f"__{self.name}"

    @property
    def consent(self) -> str:
        return f"{PUBLISHED_SCHEMA}{self.suffix}"

    @property
    def staging(self) -> str:
        return f"staging{self.suffix}"

    def dbt_vars(self, conn: psycopg.Connection) -> dict[str, str]:
        """dbt vars of the generation's consent models: where they go, which identity they read
        (this run's if it resolved one, else the published one)."""
        own = relation_exists(conn, self.consent, "client_xref")
        return {
            "build_generation": self.name,
            "identity_schema": self.consent if own else PUBLISHED_SCHEMA,
        }


@cache
def consent_models() -> tuple[str, ...]:
    """The dbt marts (schema consent), from the project's manifest: the dbt project owns them."""
    from assets.transform import ensure_manifest

    manifest = json.loads(ensure_manifest().read_text())
    return tuple(
        sorted(
            node["name"]
            for node in manifest["nodes"].values()
            if node["resource_type"] == "model" and node["fqn"][1] == "marts"
        )
    )


def _relkind(conn: psycopg.Connection, schema: str, name: str) -> str | None:
    row = conn.execute(
        "select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relname = %s",
        (schema, name),
    ).fetchone()
    return row[0] if row else None


def run_id_of(context) -> str | None:
    """The Dagster run of an asset or check context; None when it is invoked directly."""
    try:
        return context.run.run_id
    except DagsterError:
        return None


def build_schema(conn: psycopg.Connection, run_id: str | None) -> str:
    """Where a run's consent models and identity are: its generation's schema once it has
    built one, else the published schema (a check run on its own, a hand-built database)."""
    if run_id is None:
        return PUBLISHED_SCHEMA
    own = Generation.of_run(run_id).consent
    return (
        own
        if relation_exists(conn, own, "consent_history")
        or relation_exists(conn, own, "client_xref")
        else PUBLISHED_SCHEMA
    )


def published_generation(conn: psycopg.Connection) -> Generation | None:
    """The generation readers see now (None before the first publication)."""
    if not relation_exists(conn, PUBLISHED_SCHEMA, "publication"):
        return None
    stored_in = conn.execute(
        "select 1 from pg_attribute where attrelid = 'consent.publication'::regclass "
        "and attname = 'stored_in' and not attisdropped"
    ).fetchone()
    column = "coalesce(stored_in, generation)" if stored_in else "generation"
    row = conn.execute(
        f"select {column} from consent.publication order by published_at desc limit 1"
    ).fetchone()
    return Generation(row[0]) if row else None


def _point(conn: psycopg.Connection, name: str, schema: str, target: str) -> None:
    """consent.<name> := select * from <schema>.<target>, keeping the view when it can."""
    view = sql.Identifier(PUBLISHED_SCHEMA, name)
    source = sql.Identifier(schema, target)
    kind = _relkind(conn, PUBLISHED_SCHEMA, name)
    if kind == "v":
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("create or replace view {} as select * from {}").format(view, source)
                )
            return
        except psycopg.errors.InvalidTableDefinition:
            # the columns changed (a new release): the view is made again, grants re-applied
            conn.execute(sql.SQL("drop view {}").format(view))
    elif kind is not None:
        # what a build into `consent` itself left (a hand dbt build, an installation from before
        # generations): replaced by the view
        drop = "drop table {} cascade" if kind in ("r", "p") else "drop view {} cascade"
        if kind == "m":
            drop = "drop materialized view {} cascade"
        conn.execute(sql.SQL(drop).format(view))
    conn.execute(sql.SQL("create view {} as select * from {}").format(view, source))


def _previous_golden(conn: psycopg.Connection) -> sql.Composable | None:
    """What the change feed compares the run's golden_consent_at_run with: the published one,
    at its own run's instant (golden_consent itself reads at the reader's instant, so a consent
    that ran out since would never reach the feed).

    An installation from before golden_consent_at_run built golden_consent at its run's
    instant; one from before generations published to the feed through
    consent.golden_consent_published, which is then the truth of what the feed has said.
    """
    if published_generation(conn) is None and relation_exists(
        conn, PUBLISHED_SCHEMA, "golden_consent_published"
    ):
        return sql.Identifier(PUBLISHED_SCHEMA, "golden_consent_published")
    for name in ("golden_consent_at_run", "golden_consent"):
        if relation_exists(conn, PUBLISHED_SCHEMA, name):
            return sql.Identifier(PUBLISHED_SCHEMA, name)
    return None


def _take_over_identity(conn: psycopg.Connection, generation: Generation) -> list[str]:
    """Identity tables this run did not resolve: copies of the published ones (or empty)."""
    from sources.schema import create_identity_tables

    missing = [t for t in IDENTITY_TABLES if not relation_exists(conn, generation.consent, t)]
    if not missing:
        return []
    create_identity_tables(conn, generation.consent, only=missing)
    for table in missing:
        if relation_exists(conn, PUBLISHED_SCHEMA, table):
            conn.execute(
                sql.SQL("insert into {} select * from {}").format(
                    sql.Identifier(generation.consent, table),
                    sql.Identifier(PUBLISHED_SCHEMA, table),
                )
            )
    return missing


CHANGES = """
insert into consent.consent_change
    (client_id, purpose, channel, partner_code, old_status, new_status, allowed,
     valid_from, valid_until, basis_event_ids)
select coalesce(g.client_id, p.client_id), coalesce(g.purpose, p.purpose),
       coalesce(g.channel, p.channel), coalesce(g.partner_code, p.partner_code),
       coalesce(p.status, 'none'), coalesce(g.status, 'none'),
       coalesce(g.status, 'none') = 'granted',
       g.valid_from, g.valid_until, g.basis_event_ids
from {new} g
full join {old} p using (client_id, purpose, channel, partner_code)
where coalesce(g.status, 'none') is distinct from coalesce(p.status, 'none')
order by 1, 2, 3, 4
returning change_id
"""
EMPTY_GOLDEN = sql.SQL(
    "(select null::text as client_id, null::text as purpose, null::text as channel, "
    "null::text as partner_code, null::text as status where false)"
)


def _lock_published(conn: psycopg.Connection, views: bool = True) -> None:
    """Take the readers' lock and every published view, without ever making a reader fail.

    A reader's statement locks the views it reads one by one: had the publication taken some
    and waited for the others, a reader holding one and wanting another would deadlock with it,
    and PostgreSQL would cancel one of the two. So each attempt waits LOCK_ATTEMPT_TIMEOUT at
    most (well under deadlock_timeout, 1 s: the publication always gives way first), lets go of
    everything on failure and tries again; readers never wait more than one attempt.
    """
    names = [
        name
        for name in (*consent_models(), *IDENTITY_TABLES, *INTERNAL_POINTERS)
        if views and _relkind(conn, PUBLISHED_SCHEMA, name) is not None
    ]
    views = sql.SQL(", ").join(sql.Identifier(PUBLISHED_SCHEMA, n) for n in names)
    for attempt in range(LOCK_ATTEMPTS):
        try:
            with conn.transaction():
                conn.execute(f"set local lock_timeout = '{LOCK_ATTEMPT_TIMEOUT}'")
                conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (READERS_LOCK,))
                if names:
                    conn.execute(sql.SQL("lock table {} in access exclusive mode").format(views))
                conn.execute("set local lock_timeout = 0")
            return
        except psycopg.errors.LockNotAvailable:
            time.sleep(min(0.05 * (attempt + 1), 1.0))
    raise PublicationError(
        f"the published views stayed in use for {LOCK_ATTEMPTS} attempts: not published "
        "(the previous state stays; the next run publishes)"
    )


@dataclass(frozen=True)
class Published:
    generation: Generation
    changes: int
    first_change_id: int | None
    last_change_id: int | None
    identity_taken_over: list[str]
    retired: list[str]


def _ensure_publication_tables(conn: psycopg.Connection) -> None:
    """The tables a publication writes to, each created in a transaction of its own, before
    the publication's, and only when missing.

    Why: DDL locks its table until the end of its transaction, even when "if not exists" finds
    the table there (ALTER ... ADD COLUMN IF NOT EXISTS takes ACCESS EXCLUSIVE, CREATE INDEX
    IF NOT EXISTS takes SHARE). Held by the publication's transaction while it waits for the
    readers' lock, they made an answer that holds that lock and writes its access log wait for
    the publication: a deadlock, answers failing and the publication giving up.
    """
    from assets.change_feed import DDL as CHANGE_FEED_DDL
    from pipelines.api.changes import ensure_propagation_report

    with conn.transaction():
        if not _column_exists(conn, PUBLISHED_SCHEMA, "publication", "derivation_reason"):
            conn.execute(PUBLICATION_DDL)
    with conn.transaction():
        if not relation_exists(conn, PUBLISHED_SCHEMA, "consent_change"):
            conn.execute(CHANGE_FEED_DDL)
    ensure_api_tables(conn)
    with conn.transaction():
        if not relation_exists(conn, PUBLISHED_SCHEMA, "report_propagation"):
            ensure_propagation_report(conn)


def _column_exists(conn: psycopg.Connection, schema: str, table: str, column: str) -> bool:
    return (
        conn.execute(
            "select 1 from information_schema.columns "
            "where table_schema = %s and table_name = %s and column_name = %s",
            (schema, table, column),
        ).fetchone()
        is not None
    )


def publish(
    conn: psycopg.Connection,
    generation: Generation,
    *,
    run_id: str | None = None,
    as_of: datetime | None = None,
) -> Published:
    """Publish `generation` in one transaction: after a full derivation, the change feed, every
    view and function repointed and the grants; after an incremental one, the change feed and
    the affected clients' rows written into the published generation (_publish_in_place)."""
    _ensure_publication_tables(conn)
    with conn.transaction():
        # one publisher at a time (the run lock already says so; this makes it a fact here too)
        conn.execute("select pg_advisory_xact_lock(hashtext('consent-center:publication'))")
        missing = [m for m in consent_models() if not relation_exists(conn, generation.consent, m)]
        if missing:
            raise PublicationError(
                f"generation {generation.name} lacks {', '.join(missing)}: not published "
                "(the previous state stays)"
            )
        taken_over = _take_over_identity(conn, generation)
        plan = derivation_plan(conn, generation)
        in_place = plan is not None and plan["derivation"] == "incremental"
        if in_place:
            ids = _publish_in_place(conn, generation, plan, run_id, as_of)
        else:
            reason = plan["reason"] if plan is not None else "built without a plan"
            ids = _publish_whole(conn, generation, run_id, as_of, reason)
    # after an incremental derivation the run's own schemas held only the affected clients'
    # rows, now in the published generation: they go
    retired = retire_generations(conn, keep=None if in_place else generation)
    return Published(
        generation,
        len(ids),
        min(ids) if ids else None,
        max(ids) if ids else None,
        taken_over,
        retired,
    )


def _publish_whole(conn, generation: Generation, run_id, as_of, reason: str | None) -> list[int]:
    """A full derivation: the change feed against the published state, then every published
    name repointed to the generation (inside publish()'s transaction)."""
    from assets.access import apply_grants
    from pipelines.api.changes import ensure_propagation_report

    old = _previous_golden(conn) or EMPTY_GOLDEN
    new = sql.Identifier(generation.consent, "golden_consent_at_run")
    ids = [r[0] for r in conn.execute(sql.SQL(CHANGES).format(new=new, old=old)).fetchall()]
    # from here to the commit (catalog changes only: milliseconds), answers in progress
    # finish first and new ones wait
    pause_point("publication_open")
    _lock_published(conn)
    # the report's view, made again in case this version defines it differently
    ensure_propagation_report(conn)
    # the overlay's view reads the published identity and events: made again over the new ones
    conn.execute("drop view if exists consent.pending_api_revocations")
    for name in (*consent_models(), *IDENTITY_TABLES):
        _point(conn, name, generation.consent, name)
    for name, target in INTERNAL_POINTERS.items():
        _point(conn, name, generation.staging, target)
    ensure_pending_view(conn)
    conn.execute(PENDING_KEYS_FUNCTION)
    conn.execute(
        sql.SQL(GOLDEN_CONSENT_VIEW).format(
            golden=sql.Identifier(generation.consent, "golden_consent")
        )
    )
    conn.execute(sql.SQL(STATUS_FUNCTION).format(sql.Identifier(generation.consent)))
    conn.execute(STATUS_FUNCTION_COMMENT)
    conn.execute("drop table if exists consent.golden_consent_published")
    conn.execute(
        "insert into consent.publication "
        "(generation, run_id, as_of, changes, stored_in, derivation, derivation_reason) "
        "values (%s, %s, %s, %s, %s, 'full', %s)",
        (generation.name, run_id, as_of, len(ids), generation.name, reason),
    )
    apply_grants(conn)
    conn.execute(STATUS_FUNCTION_GRANTS)
    conn.execute(PENDING_KEYS_GRANTS)
    return ids


def derivation_plan(conn: psycopg.Connection, generation: Generation) -> dict | None:
    """What the run derived (pipelines/derivation_scope.py); None for a hand-built generation."""
    if not relation_exists(conn, generation.staging, "derivation_plan"):
        return None
    cursor = conn.execute(
        sql.SQL("select * from {}").format(sql.Identifier(generation.staging, "derivation_plan"))
    )
    row = cursor.fetchone()
    return dict(zip([c.name for c in cursor.description], row, strict=True)) if row else None


@cache
def _stored_models() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-client parts, whole tables) of the consent models, from the dbt manifest: the
    models with meta `derived_by_client` (in schema staging), and the marts stored as tables
    (the reports, in schema consent)."""
    from assets.transform import ensure_manifest

    manifest = json.loads(ensure_manifest().read_text())
    parts, whole = [], []
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        config = node["config"]
        if (config.get("meta") or {}).get("derived_by_client"):
            parts.append(node["name"])
        elif node["fqn"][1] == "marts" and config.get("materialized") == "table":
            whole.append(node["name"])
    return tuple(sorted(parts)), tuple(sorted(whole))


#: how an identity table's rows are matched when it is brought up to date in place (None: the
#: table is small and replaced whole)
IDENTITY_KEYS = {
    "client_xref": ("source", "source_record_id"),
    "golden_client": ("client_id",),
    "identity_ambiguous_matches": None,
}
#: the run's plan and what it was derived from (validation verdicts, the catalog): what the next
#: run compares with (pipelines/derivation_scope.py)
PLAN_TABLES = (
    "derivation_plan",
    "validation_verdicts",
    "int_catalog__consent_types",
    "int_catalog__crm_flag_map",
    "int_catalog__product_matrix",
    "int_catalog__wordings",
    "int_catalog__wording_periods",
)


def _replace_rows(conn, source: str, target: str, table: str, key: tuple[str, ...] | None) -> None:
    """Make target.table hold exactly source.table's rows, touching only the rows that differ."""
    old, new = sql.Identifier(target, table), sql.Identifier(source, table)
    if key is None:
        conn.execute(sql.SQL("delete from {}").format(old))
        conn.execute(sql.SQL("insert into {} select * from {}").format(old, new))
        return
    columns = sql.SQL(", ").join(map(sql.Identifier, key))
    match = sql.SQL(" and ").join(sql.SQL("t.{c} = d.{c}").format(c=sql.Identifier(c)) for c in key)
    conn.execute(
        sql.SQL(
            "delete from {old} t using (select {columns} from "
            "(select * from {old} except select * from {new}) x) d where {match}"
        ).format(old=old, new=new, columns=columns, match=match)
    )
    conn.execute(
        sql.SQL("insert into {old} select * from {new} except select * from {old}").format(
            old=old, new=new
        )
    )


def _publish_in_place(conn, generation: Generation, plan: dict, run_id, as_of) -> list[int]:
    """An incremental derivation: the affected clients' rows replace theirs in the published
    generation's tables, the reports are replaced whole, identity brought up to date, and the
    change feed told the affected clients' changes, all in publish()'s one transaction. The
    published views stay as they are; readers' statements see the state before or after."""
    base = published_generation(conn)
    if base is None or base.name != plan["based_on"]:
        raise PublicationError(
            f"generation {generation.name} was derived on {plan['based_on']}, but "
            f"{base.name if base else 'nothing'} is published: not published (the next run "
            "derives again)"
        )
    affected = sql.Identifier(generation.staging, "affected_clients")
    only = sql.SQL("(select * from {} where client_id in (select client_id from {}))")
    new = only.format(sql.Identifier(generation.consent, "golden_consent_at_run"), affected)
    old = only.format(sql.Identifier(PUBLISHED_SCHEMA, "golden_consent_at_run"), affected)
    ids = [r[0] for r in conn.execute(sql.SQL(CHANGES).format(new=new, old=old)).fetchall()]
    parts, whole = _stored_models()
    for name in parts:
        target = sql.Identifier(base.staging, name)
        conn.execute(
            sql.SQL(
                "delete from {} where client_id in (select client_id from {}) or client_id is null"
            ).format(target, affected)
        )
        conn.execute(
            sql.SQL("insert into {} select * from {}").format(
                target, sql.Identifier(generation.staging, name)
            )
        )
    for name in whole:
        _replace_rows(conn, generation.consent, base.consent, name, None)
    for name, key in IDENTITY_KEYS.items():
        _replace_rows(conn, generation.consent, base.consent, name, key)
    for name in PLAN_TABLES:
        _replace_rows(conn, generation.staging, base.staging, name, None)
    (count,) = conn.execute(sql.SQL("select count(*) from {}").format(affected)).fetchone()
    conn.execute(
        "insert into consent.publication "
        "(generation, run_id, as_of, changes, stored_in, derivation, affected_clients, "
        "derivation_reason) values (%s, %s, %s, %s, %s, 'incremental', %s, %s)",
        (generation.name, run_id, as_of, len(ids), base.name, count, plan["reason"]),
    )
    # everything is written; answers of several statements in progress finish first (they read
    # the state before), new ones wait the moment of the commit (then read the state after)
    pause_point("publication_open")
    _lock_published(conn, views=False)
    return ids


def retire_generations(conn: psycopg.Connection, keep: Generation | None = None) -> list[str]:
    """Drop every generation's schemas but the published one (and `keep`); return those dropped.

    A generation still read (a long query that started before the publication) is left for the
    next call: the drop waits RETIRE_LOCK_TIMEOUT for its lock, never longer.
    """
    current = published_generation(conn)
    kept = {g.name for g in (current, keep) if g is not None}
    schemas = [
        row[0]
        for row in conn.execute("select nspname from pg_namespace order by nspname")
        if (match := GENERATION_SCHEMA.fullmatch(row[0])) and match[2] not in kept
    ]
    dropped = []
    for schema in schemas:
        try:
            with conn.transaction():
                conn.execute(f"set local lock_timeout = '{RETIRE_LOCK_TIMEOUT}'")
                conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
            dropped.append(schema)
        except psycopg.errors.LockNotAvailable:
            log.info("generation schema %s still read: left for the next publication", schema)
    return dropped


def prepare_generation(conn: psycopg.Connection, generation: Generation) -> None:
    """The generation's schemas, private to the owner (readers go through consent.*)."""
    for schema in (generation.staging, generation.consent):
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("revoke all on schema {} from public").format(sql.Identifier(schema)))
