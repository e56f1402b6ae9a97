"""Depersonalisation (DESIGN rule 8): erase requests whose retention duty has ended are executed.

`consent.report_depersonalisation` (dbt) lists every client with a helpdesk `erase_data`
request, the retention holds that block it and its state. This asset executes the `due` rows,
set-based and in ONE transaction:

* every source record of the client (its client_xref rows at that moment) is listed in
  `consent.depersonalised_records` with one random pseudonym per client: 'Anon' and 32 digits
  drawn from gen_random_uuid(), nothing of the person goes into it, so it cannot be reversed.
  One word of letters and digits survives name normalisation, helpdesk name parsing and
  survivorship unchanged, so golden_client rebuilt by identity resolution shows exactly it;
* in the raw tables feeding the person records (crm_clients, web_events, helpdesk_tickets,
  partner_clients) every personal column (assets/access.PERSONAL_COLUMNS: names, free-text
  name, birth date, phone, e-mail, passport, address, IP) is overwritten: the surname (or the
  helpdesk `fio`) becomes the pseudonym, every other personal field is emptied; a web event's
  `_payload` loses its person and IP the same way. Staging keeps each batch's rows typed once
  (stg_* tables over base_* views): every raw row changed here is staged again through its base
  view in the same transaction, so the staged copy is erased too, exactly as a re-staging of the
  erased raw rows would type it, and no later dbt run can bring the data back;
* consent.golden_client shows the pseudonym and nothing else personal; personal fields kept for
  evidence of rejected rows (consent.dq_rejections.raw_record) are dropped; phone numbers no
  raw row uses any more leave the raw.phone_numbers lookup; client_xref's record_hash (a
  fingerprint of the old fields) is cleared;
* consent evidence is untouched: contracts, ticks, web consents, tickets' scopes and letter
  scans, evidence URLs, consent_event and history rows;
* one audit row per client goes into `consent.depersonalisation_audit` (ids, dates and row
  counts per table, never a personal value), and the report's row turns `done`.
* after the commit, when any client was executed or re-applied, every dashboard of
  `consent-center identity-report` (splink's comparison viewer and cluster studio, raw
  records inside) is deleted (assets/identity/review.py), with counts only in the log.

Idempotent: an executed client is never executed again, and an update only touches a row whose
values differ from their depersonalised form, so a second run changes nothing. When a later
batch brings a depersonalised record again (a CRM re-export of the card), the same pass
overwrites it too and the audit row records the re-application. Identity resolution keeps the
listed records on their client (assets/identity/assets.py): with only a pseudonym left, splink
would otherwise split them off.
"""

import json
from functools import cache

import psycopg
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from psycopg import sql

from assets.access import PERSONAL_COLUMNS
from assets.identity.review import remove_identity_reports
from pipelines.resources import ConsentCenterResource
from sources import SOURCES
from sources.phones import KEY_SQL, PHONE_COLUMNS
from sources.schema import ensure_schema, relation_exists

DEPERSONALISATION_KEY = AssetKey(["consent", "depersonalisation"])
REPORT_KEY = AssetKey(["consent", "report_depersonalisation"])
GOLDEN_KEY = AssetKey(["consent", "golden_client"])

#: personal columns that take the client's pseudonym; every other personal column is emptied
PSEUDONYM_COLUMNS = ("last_name", "fio")
GOLDEN_PERSONAL = ("first_name", "middle_name", "birth_date", "phone", "email")

_TRIM = sql.SQL(r"E' \t\r\n\u00a0'")  # the staging macro empty_to_null trims these


def _clean(column: str) -> sql.Composable:
    """A raw column as staging reads it (empty_to_null), so raw rows match source_record_id."""
    return sql.SQL("nullif(btrim(t.{}, {}), '')").format(sql.Identifier(column), _TRIM)


#: raw table -> (client_xref source, its source_record_id as staging builds it)
RECORD_KEYS: dict[str, tuple[str, sql.Composable]] = {
    "crm_clients": ("crm", _clean("crm_client_id")),
    "web_events": ("web", _clean("account_id")),
    "helpdesk_tickets": ("helpdesk", _clean("ticket_id")),
    "partner_clients": (
        "partner",
        sql.SQL("{} || ':' || {}").format(_clean("partner_code"), _clean("partner_client_id")),
    ),
}


def person_tables() -> list[tuple[str, str, list[str], str]]:
    """(raw table, source, personal columns, file format) for every raw table holding people.

    Derived from the feed declarations, so a personal column added to a feed is erased too; a
    new person-bearing table without a record key fails here rather than escape erasure.
    """
    tables = []
    for source in SOURCES.values():
        for spec in source.tables:
            personal = [c for c in spec.column_names if c in PERSONAL_COLUMNS]
            if not personal:
                continue
            if spec.table not in RECORD_KEYS:
                raise RuntimeError(f"raw.{spec.table} holds personal data but has no record key")
            tables.append((spec.table, RECORD_KEYS[spec.table][0], personal, spec.file_format))
    return tables


@cache
def staged_tables() -> dict[str, tuple[str, str]]:
    """raw table -> (base view, staged table) of the typed staging, from the dbt manifest.

    The dbt project owns the pairing by name: base_<source>__<entity> parses raw.<source>_<entity>
    and stg_<source>__<entity> stages it.
    """
    from assets.transform import ensure_manifest

    manifest = json.loads(ensure_manifest().read_text())
    pairs = {}
    for node in manifest["nodes"].values():
        name = node["name"]
        if node["resource_type"] != "model" or not name.startswith("base_"):
            continue
        entity = name.removeprefix("base_")
        raw = entity.replace("__", "_", 1)
        if f"source.consent_center.raw.{raw}" not in node["depends_on"]["nodes"]:
            raise RuntimeError(f"dbt model {name} does not read raw.{raw}")
        pairs[raw] = (name, f"stg_{entity}")
    return pairs


def _raw_update(table: str, source: str, personal: list[str], file_format: str) -> sql.Composed:
    """Overwrite one raw table's personal columns for the listed records; count per client."""
    empty = sql.SQL("null") if file_format == "jsonl" else sql.SQL("''")
    columns = list(personal)
    values = [sql.SQL("d.pseudonym") if c in PSEUDONYM_COLUMNS else empty for c in personal]
    if table == "web_events":
        # the JSON line as received: its person and IP go the same way as the columns
        person = sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(c), value)
            for c, value in zip(personal, values, strict=True)
            if c != "ip"
        )
        columns.append("_payload")
        values.append(
            sql.SQL(
                "t._payload || jsonb_build_object('person', jsonb_build_object({}), 'ip', null)"
            ).format(person)
        )
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), value)
        for c, value in zip(columns, values, strict=True)
    )
    old = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns)
    return sql.SQL(
        """
        with changed as (
            update raw.{table} as t set {assignments}
            from consent.depersonalised_records d
            where d.source = {source} and d.source_record_id = {key}
              and ({old}) is distinct from ({new})
            returning d.client_id, t._batch_id, t._file_name, t._line_number
        ), to_restage as (
            insert into _restage_rows (table_name, batch_id, file_name, line_number)
            select {table_name}, _batch_id, _file_name, _line_number from changed
        )
        insert into _depersonalised_rows (client_id, table_name, n)
        select client_id, {label}, count(*) from changed group by client_id
        """
    ).format(
        table=sql.Identifier(table),
        table_name=sql.Literal(table),
        assignments=assignments,
        source=sql.Literal(source),
        key=RECORD_KEYS[table][1],
        old=old,
        new=sql.SQL(", ").join(values),
        label=sql.Literal(f"raw.{table}"),
    )


def _restage(conn: psycopg.Connection) -> dict[str, int]:
    """Stage the raw rows erased in this transaction again, through their base views."""
    restaged = {}
    for table, (base, staged) in sorted(staged_tables().items()):
        if not relation_exists(conn, "staging", staged):
            continue  # staging was never built: the next build types the erased rows
        n = conn.execute(
            sql.SQL(
                """
                with gone as (
                    delete from staging.{staged} s using _restage_rows r
                    where r.table_name = {table} and s.batch_id = r.batch_id
                      and s.file_name = r.file_name and s.line_number = r.line_number
                    returning s.batch_id, s.file_name, s.line_number, s.batch_loaded_at, s.parsed_by
                )
                insert into staging.{staged}
                select b.*, g.batch_loaded_at, g.parsed_by
                from staging.{base} b
                join gone g on g.batch_id = b.batch_id and g.file_name = b.file_name
                    and g.line_number = b.line_number
                """
            ).format(
                staged=sql.Identifier(staged), base=sql.Identifier(base), table=sql.Literal(table)
            )
        ).rowcount
        if n:
            restaged[f"staging.{staged}"] = n
    return restaged


def _phone_keys_of_listed_records() -> sql.Composed:
    """Phone keys the listed records still carry (read before they are overwritten)."""
    parts = []
    for table, source, _, _ in person_tables():
        if table not in PHONE_COLUMNS:
            continue
        column = sql.SQL("t.{}").format(sql.Identifier(PHONE_COLUMNS[table]))
        parts.append(
            sql.SQL(
                "select {key} as phone_key from raw.{table} t "
                "join consent.depersonalised_records d "
                "on d.source = {source} and d.source_record_id = {record} "
                "where coalesce({column}, '') <> ''"
            ).format(
                key=sql.SQL(KEY_SQL).format(col=column),
                table=sql.Identifier(table),
                source=sql.Literal(source),
                record=RECORD_KEYS[table][1],
                column=column,
            )
        )
    return sql.SQL(" union ").join(parts)


def _unused_phone_keys_delete() -> sql.Composed:
    """Drop erased phone keys from the lookup unless some raw row still uses them."""
    still_used = [
        sql.SQL("not exists (select 1 from raw.{table} t where {key} = p.phone_key)").format(
            table=sql.Identifier(table),
            key=sql.SQL(KEY_SQL).format(col=sql.SQL("t.{}").format(sql.Identifier(column))),
        )
        for table, column in PHONE_COLUMNS.items()
    ]
    return sql.SQL(
        "delete from raw.phone_numbers p using _erased_phones e "
        "where p.phone_key = e.phone_key and {}"
    ).format(sql.SQL(" and ").join(still_used))


# clients of the report that are due and not executed yet, with a fresh random pseudonym each
_DUE = """
create temp table _due on commit drop as
select r.client_id, r.request_ids, r.received_at, r.allowed_from,
       'Anon' || translate(replace(gen_random_uuid()::text, '-', ''), 'abcdef', '012345')
           as pseudonym
from consent.report_depersonalisation r
where r.state = 'due' and r.client_id is not null
  and not exists (select 1 from consent.depersonalisation_audit a where a.client_id = r.client_id)
"""

_LIST_RECORDS = """
insert into consent.depersonalised_records
    (source, source_record_id, client_id, pseudonym, executed_at)
select x.source, x.source_record_id, x.client_id, d.pseudonym, now()
from _due d
join consent.client_xref x on x.client_id = d.client_id
on conflict (source, source_record_id) do nothing
"""

_GOLDEN = sql.SQL(
    """
    with clients as (
        select distinct client_id, pseudonym from consent.depersonalised_records
    ), changed as (
        update consent.golden_client g set last_name = c.pseudonym, {cleared}
        from clients c
        where g.client_id = c.client_id
          and (g.last_name, {old}) is distinct from (c.pseudonym, {nulls})
        returning g.client_id
    )
    insert into _depersonalised_rows (client_id, table_name, n)
    select client_id, 'consent.golden_client', count(*) from changed group by client_id
    """
).format(
    cleared=sql.SQL(", ").join(
        sql.SQL("{} = null").format(sql.Identifier(c)) for c in GOLDEN_PERSONAL
    ),
    old=sql.SQL(", ").join(sql.SQL("g.{}").format(sql.Identifier(c)) for c in GOLDEN_PERSONAL),
    nulls=sql.SQL(", ").join(
        sql.SQL("null::{}").format(sql.SQL("date" if c == "birth_date" else "text"))
        for c in GOLDEN_PERSONAL
    ),
)

# Rejected rows keep the row as read for evidence: drop its personal fields (and the unparsed
# line, which cannot be split). Web rows are named by event, so match their account instead.
_REJECTIONS = """
with changed as (
    update consent.dq_rejections q
    set raw_record = (q.raw_record - %(personal)s::text[] - 'line' - '_payload')
                     || '{"depersonalised": true}'::jsonb
    from consent.depersonalised_records d
    where q.raw_record is not null and not q.raw_record ? 'depersonalised'
      and d.source = q.source
      and d.source_record_id = case when q.source = 'web' then q.raw_record ->> 'account_id'
                                    else q.record_id end
      and (q.source <> 'crm' or q.file_name = 'clients.csv')
    returning d.client_id
)
insert into _depersonalised_rows (client_id, table_name, n)
select client_id, 'consent.dq_rejections', count(*) from changed group by client_id
"""

_XREF_HASH = """
update consent.client_xref x set record_hash = null
from consent.depersonalised_records d
where x.source = d.source and x.source_record_id = d.source_record_id
  and x.record_hash is not null
"""

_AUDIT = """
insert into consent.depersonalisation_audit
    (client_id, request_ids, received_at, allowed_from, executed_at, source_records,
     rows_pseudonymised)
select d.client_id, d.request_ids, d.received_at, d.allowed_from, now(),
       (select count(*) from consent.depersonalised_records r where r.client_id = d.client_id),
       coalesce((select jsonb_object_agg(c.table_name, c.n) from _depersonalised_rows c
                 where c.client_id = d.client_id), '{}')
from _due d
"""

# later batches of already executed clients: record the re-application (counts summed)
_REAPPLIED = """
update consent.depersonalisation_audit a
set reapplied_at = now(),
    rows_reapplied = (
        select jsonb_object_agg(key, total)
        from (select key, sum(value::bigint) as total
              from (select * from jsonb_each_text(a.rows_reapplied)
                    union all select * from jsonb_each_text(c.counts)) both_counts
              group by key) summed
    )
from (select client_id, jsonb_object_agg(table_name, n) as counts
      from _depersonalised_rows
      where client_id not in (select client_id from _due)
      group by client_id) c
where a.client_id = c.client_id
returning a.client_id
"""

_REPORT_DONE = """
update consent.report_depersonalisation r set state = 'done', executed_at = now()
from _due d
where r.client_id = d.client_id
"""


def execute_depersonalisation(conn: psycopg.Connection) -> dict:
    """Execute every due erase request of report_depersonalisation in one transaction.

    Returns ids and counts only: executed client ids, re-applied client ids, records listed,
    and rows changed per table.
    """
    with conn.transaction():
        ensure_schema(conn)
        # one execution at a time; a second one waits and then finds nothing left to do
        conn.execute("select pg_advisory_xact_lock(hashtext('consent-center:depersonalisation'))")
        has_report = conn.execute(
            "select to_regclass('consent.report_depersonalisation') is not null"
        ).fetchone()[0]
        if has_report:
            conn.execute(_DUE)
        else:  # the report was never built: nothing can be due
            conn.execute(
                "create temp table _due (client_id text, request_ids text[], "
                "received_at timestamptz, allowed_from timestamptz, pseudonym text) "
                "on commit drop"
            )
        conn.execute(
            "create temp table _depersonalised_rows "
            "(client_id text, table_name text, n bigint) on commit drop"
        )
        conn.execute(
            "create temp table _restage_rows (table_name text, batch_id text, file_name text, "
            "line_number bigint) on commit drop"
        )
        executed = [r[0] for r in conn.execute("select client_id from _due order by 1")]
        records = conn.execute(_LIST_RECORDS).rowcount
        conn.execute(
            sql.SQL("create temp table _erased_phones on commit drop as {}").format(
                _phone_keys_of_listed_records()
            )
        )
        for table, source, personal, file_format in person_tables():
            conn.execute(_raw_update(table, source, personal, file_format))
        restaged = _restage(conn)
        conn.execute(_GOLDEN)
        conn.execute(_REJECTIONS, {"personal": sorted(PERSONAL_COLUMNS)})
        phones = 0
        if conn.execute("select exists (select 1 from _erased_phones)").fetchone()[0]:
            phones = conn.execute(_unused_phone_keys_delete()).rowcount
        hashes = conn.execute(_XREF_HASH).rowcount
        conn.execute(_AUDIT)
        reapplied = [r[0] for r in conn.execute(_REAPPLIED)]
        if has_report:
            conn.execute(_REPORT_DONE)
        rows = dict(
            conn.execute(
                "select table_name, sum(n)::bigint from _depersonalised_rows "
                "group by table_name order by 1"
            ).fetchall()
        )
    rows.update(restaged)
    if phones:
        rows["raw.phone_numbers"] = phones
    if hashes:
        rows["consent.client_xref.record_hash"] = hashes
    return {
        "executed_clients": executed,
        "reapplied_clients": sorted(reapplied),
        "records": records,
        "rows": rows,
    }


@asset(
    key=DEPERSONALISATION_KEY,
    # reads and marks the published report, and erases from the published identity
    deps=[REPORT_KEY, GOLDEN_KEY, AssetKey(["consent", "consent_change"])],
    group_name="publish",
    kinds={"postgres"},
    description="Executes the due erase requests of report_depersonalisation: personal data in "
    "golden_client and the raw/staging person records replaced by irreversible pseudonyms, "
    "consent evidence kept, one row per client in consent.depersonalisation_audit.",
)
def depersonalisation(
    context: AssetExecutionContext, consent_center: ConsentCenterResource
) -> MaterializeResult:
    with consent_center.connect() as conn:
        result = execute_depersonalisation(conn)
    executed, reapplied = result["executed_clients"], result["reapplied_clients"]
    # client ids and counts only: never a personal value in the logs
    context.log.info(
        f"depersonalisation: {len(executed)} clients executed ({result['records']} source "
        f"records), {len(reapplied)} re-applied to later batches; rows: {result['rows']}"
    )
    removed = {"files": 0, "folders": 0}
    if executed or reapplied:
        # splink's dashboards (consent-center identity-report) show raw records: an erased
        # person's may be in them, so every one of them goes, whoever it showed
        removed = remove_identity_reports(consent_center.settings())
        context.log.info(
            f"depersonalisation: identity-report dashboards removed: {removed['files']} files, "
            f"{removed['folders']} folders (write them again with consent-center identity-report)"
        )
    return MaterializeResult(
        metadata={
            "clients_executed": len(executed),
            "clients_reapplied": len(reapplied),
            "source_records": result["records"],
            "rows_changed": MetadataValue.json(result["rows"]),
            "executed_client_ids": MetadataValue.json(executed[:100]),
            "identity_report_files_removed": removed["files"],
        }
    )
