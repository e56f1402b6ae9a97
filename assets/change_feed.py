"""The change feed (DESIGN section 6): one row per status change of golden_consent.

Call-centre, e-mail and SMS systems read `consent.consent_change` after the last `change_id`
they saw (ids only grow). Each run compares the freshly derived golden_consent with the state
last published, appends the differences and publishes the new state in one transaction, so a
change is neither lost nor repeated when a run is retried. Every run's changes are also written
as JSON lines to CONSENT_HOME/reports/changes/ for systems that take files.
"""

from pathlib import Path

import psycopg
from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from pipelines.resources import ConsentCenterResource

CHANGE_KEY = AssetKey(["consent", "consent_change"])

DDL = """
create table if not exists consent.consent_change (
    change_id       bigint generated always as identity primary key,
    client_id       text not null,
    purpose         text not null,
    channel         text not null,
    partner_code    text not null,
    old_status      text not null,
    new_status      text not null,
    allowed         boolean not null,
    valid_from      timestamptz,
    valid_until     timestamptz,
    basis_event_ids text[],
    changed_at      timestamptz not null default now()
);
"""
PUBLISHED = """
create table if not exists consent.golden_consent_published (
    client_id text, purpose text, channel text, partner_code text, status text,
    valid_from timestamptz, valid_until timestamptz, basis_event_ids text[],
    primary key (client_id, purpose, channel, partner_code)
);
comment on table consent.golden_consent_published is
    'golden_consent as last published to the change feed (internal).';
"""


def publish_changes(conn: psycopg.Connection) -> tuple[int, int | None, int | None]:
    """Append golden_consent's changes since the last publication; (count, first id, last id)."""
    with conn.transaction():
        conn.execute(DDL)
        conn.execute(PUBLISHED)
        conn.execute("lock table consent.golden_consent_published in exclusive mode")
        rows = conn.execute(
            """
            insert into consent.consent_change
                (client_id, purpose, channel, partner_code, old_status, new_status, allowed,
                 valid_from, valid_until, basis_event_ids)
            select coalesce(g.client_id, p.client_id), coalesce(g.purpose, p.purpose),
                   coalesce(g.channel, p.channel), coalesce(g.partner_code, p.partner_code),
                   coalesce(p.status, 'none'), coalesce(g.status, 'none'),
                   coalesce(g.status, 'none') = 'granted',
                   g.valid_from, g.valid_until, g.basis_event_ids
            from consent.golden_consent g
            full join consent.golden_consent_published p
                using (client_id, purpose, channel, partner_code)
            where coalesce(g.status, 'none') is distinct from coalesce(p.status, 'none')
            order by 1, 2, 3, 4
            returning change_id
            """
        ).fetchall()
        conn.execute("truncate consent.golden_consent_published")
        conn.execute(
            "insert into consent.golden_consent_published select client_id, purpose, channel, "
            "partner_code, status, valid_from, valid_until, basis_event_ids "
            "from consent.golden_consent"
        )
    ids = [r[0] for r in rows]
    return len(ids), (min(ids) if ids else None), (max(ids) if ids else None)


def write_change_file(conn: psycopg.Connection, folder: Path, first: int, last: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"changes-{first:012d}-{last:012d}.jsonl"
    with (
        open(path, "wb") as out,
        conn.cursor() as cur,
        cur.copy(
            "copy (select row_to_json(c)::text from consent.consent_change c "
            f"where change_id between {int(first)} and {int(last)} order by change_id) to stdout"
        ) as copy,
    ):
        for block in copy:
            out.write(block)
    return path


@multi_asset(
    name="consent_change_feed",
    specs=[
        AssetSpec(
            CHANGE_KEY,
            deps=[AssetKey(["consent", "golden_consent"])],
            description="Change feed of golden_consent for call-centre, e-mail and SMS systems.",
            group_name="publish",
            kinds={"postgres"},
        )
    ],
)
def consent_change_feed(context: AssetExecutionContext, consent_center: ConsentCenterResource):
    with consent_center.connect() as conn:
        count, first, last = publish_changes(conn)
        path = None
        if count:
            path = write_change_file(
                conn, consent_center.settings().reports_dir / "changes", first, last
            )
    context.log.info(f"{count} consent changes published" + (f" ({path})" if path else ""))
    return MaterializeResult(
        metadata={
            "changes": count,
            "first_change_id": first or 0,
            "last_change_id": last or 0,
            "file": str(path) if path else "",
        }
    )
