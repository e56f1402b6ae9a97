"""Which clients a run derives (DESIGN section 12: a daily run touches what changed).

A run derives every client when it must (the first run, `--full-refresh` or `--rederive`, a new
release of the derivation's code, a catalog change, most clients reached anyway) and otherwise
only the clients its changes reach, computed here before the consent models are built:

* records in batches loaded (or loaded again) since the published generation was planned, and
  the records named by revocations received through the API that this run took in;
* records whose form-validation verdict changed (rules that read the clock or the catalog);
* records and clients erased or re-pseudonymised since then;
* clients whose identity changed: every record whose client differs between the published
  client_xref and this run's (its old and its new client), and both sides of every possible
  match that appeared or went away;
* clients whose status at the run's instant the clock moved: a history interval, a grant or the
  end of a grant between the published run's instant and this one's;
* one step further, the other side of each possible match of those clients, because their
  revocations are honoured across it (macros/consent_event_part.sql).

Records of no client (events whose record identity has not resolved, a web account with no
person yet) belong to no client's rows: they are among the affected records of every
incremental run, which derives their events again, so that a record linked since moves to its
client (whose identity changed) and the others stay as they were; the publication replaces
the rows of no client with them.

The result goes into the generation's staging schema: `affected_clients`, `affected_records`
(every record of those clients, the records whose revocations are honoured for them, and the
records of no client) and
`derivation_plan` (one row: what the publication records, and what the next run compares with).
The dbt models read them through the var `affected_schema` (macros/affected_clients.sql), and
the publication replaces those clients' rows of the published parts in one transaction
(pipelines/publication.py). Everything is set-based SQL over indexed columns: its cost follows
the day's changes, apart from the comparison of identities (a hash join of two client_xref).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import psycopg
from psycopg import sql

from sources.schema import relation_exists

#: above this share of all clients, one full derivation is cheaper than a filtered one ...
FULL_DERIVATION_SHARE = 0.3
FULL_DERIVATION_SHARE_ENV = "CONSENT_FULL_DERIVATION_SHARE"
#: ... unless so few clients are affected that either way costs nothing worth weighing
FULL_DERIVATION_MIN_CLIENTS = 1000


def full_derivation_share() -> float:
    """CONSENT_FULL_DERIVATION_SHARE, else 0.3: the share of all clients above which a run
    derives every client at once (1 or more: never for the share alone). Either way derives
    the same state; only the cost differs, and where it turns depends on the machine."""
    text = os.environ.get(FULL_DERIVATION_SHARE_ENV, "").strip()
    if not text:
        return FULL_DERIVATION_SHARE
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share < float("inf"):
        raise ValueError(f"{FULL_DERIVATION_SHARE_ENV} must be a number from 0 up, not {text!r}")
    return share


#: staged table -> (source, the column that is the source's source_record_id in client_xref)
RECORD_KEYS = {
    "stg_crm__clients": ("crm", "crm_client_id"),
    "stg_crm__consent_flags": ("crm", "crm_client_id"),
    "stg_crm__contracts": ("crm", "crm_client_id"),
    "stg_web__events": ("web", "account_id"),
    "stg_helpdesk__tickets": ("helpdesk", "ticket_id"),
    "stg_partner__clients": ("partner", "source_record_id"),
}
#: revocations received through the API: they name the record (subject_source,
#: subject_record_id) whose client they reach
API_STAGED = "stg_api__revocations"
#: the form-validation verdicts the consent models read (macros/consent_event_part.sql)
VERDICTS = """
select source, batch_id, file_name, line_number, record_id, rule
from consent.dq_rejections
where stage = 'validate' and severity = 'reject'
"""


@dataclass
class DerivationScope:
    """What one run derives: every client, or the affected ones (`causes`: clients per cause)."""

    incremental: bool
    reason: str
    based_on: str | None = None
    affected_clients: int | None = None
    causes: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        data: dict[str, object] = {
            "derivation": "incremental" if self.incremental else "full",
            "derivation_reason": self.reason,
        }
        if self.affected_clients is not None:
            data["affected_clients"] = self.affected_clients
            data["affected_clients_by_cause"] = dict(self.causes)
        return data


@cache
def derivation_fingerprint() -> str:
    """The derivation's code: every staging, intermediate and mart model and every macro of the
    dbt project (their checksums in the manifest) and the report settings. A new release changes
    it, and the next run then derives every client again."""
    from assets.transform import ensure_manifest

    manifest = json.loads(ensure_manifest().read_text())
    parts = sorted(
        f"{node['unique_id']}:{node['checksum']['checksum']}"
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    )
    parts += sorted(
        f"{m['unique_id']}:{hashlib.md5(m['macro_sql'].encode()).hexdigest()}"
        for m in manifest["macros"].values()
        if m["package_name"] == "consent_center"
    )
    parts.append(f"expiring_days:{os.environ.get('CONSENT_EXPIRING_DAYS', '30')}")
    return hashlib.md5("\n".join(parts).encode()).hexdigest()[:16]


PLAN_DDL = """
create table {plan} (
    derivation   text not null,
    reason       text not null,
    based_on     text,
    fingerprint  text not null,
    inputs_until timestamptz,
    planned_at   timestamptz not null,
    as_of        timestamptz not null
);
create table {clients} (client_id text primary key);
create table {records} (source text, source_record_id text, primary key (source, source_record_id));
create table {verdicts} as {verdicts_query};
"""


def _previous_plan(conn: psycopg.Connection, base_staging: str) -> dict | None:
    if not relation_exists(conn, base_staging, "derivation_plan"):
        return None
    cursor = conn.execute(
        sql.SQL("select * from {}").format(sql.Identifier(base_staging, "derivation_plan"))
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([c.name for c in cursor.description], row, strict=True))


def plan_derivation(
    conn: psycopg.Connection,
    staging: str,
    identity_schema: str,
    as_of: datetime,
    *,
    published: tuple[str, str] | None,
    full: bool = False,
) -> DerivationScope:
    """Decide and record what this run derives, in schema `staging` (the generation's).

    identity_schema: where this run's client_xref is. published: the (staging, consent) schemas
    of the published generation, None before the first publication. full: derive every client.
    """
    names = {
        "plan": sql.Identifier(staging, "derivation_plan"),
        "clients": sql.Identifier(staging, "affected_clients"),
        "records": sql.Identifier(staging, "affected_records"),
        "verdicts": sql.Identifier(staging, "validation_verdicts"),
    }
    for name in names.values():
        conn.execute(sql.SQL("drop table if exists {}").format(name))
    conn.execute(sql.SQL(PLAN_DDL).format(verdicts_query=sql.SQL(VERDICTS), **names))
    (inputs_until,) = conn.execute(
        "select max(finished_at) from consent.ingest_batches where status = 'loaded'"
    ).fetchone()
    if relation_exists(conn, "consent", "api_revocation"):
        # the revocations received through the API that this run took in count as input too
        (taken_until,) = conn.execute("select max(taken_at) from consent.api_revocation").fetchone()
        inputs_until = max((t for t in (inputs_until, taken_until) if t is not None), default=None)
    scope = _scope(conn, names, identity_schema, as_of, published, full)
    conn.execute(
        sql.SQL("insert into {} values (%s, %s, %s, %s, %s, clock_timestamp(), %s)").format(
            names["plan"]
        ),
        (
            "incremental" if scope.incremental else "full",
            scope.reason,
            scope.based_on,
            derivation_fingerprint(),
            inputs_until,
            as_of,
        ),
    )
    if not scope.incremental:
        # nothing filters a full derivation; the tables stay, empty, for the record
        return scope
    conn.execute(sql.SQL("analyze {}").format(names["clients"]))
    conn.execute(sql.SQL("analyze {}").format(names["records"]))
    return scope


def _scope(conn, names, identity_schema, as_of, published, full) -> DerivationScope:
    if full:
        return DerivationScope(False, "asked for (--full-refresh or --rederive)")
    if published is None:
        return DerivationScope(False, "first derivation of this installation")
    base_staging, base_consent = published
    previous = _previous_plan(conn, base_staging)
    if previous is None:
        return DerivationScope(False, "the published state records no plan (older version)")
    if previous["fingerprint"] != derivation_fingerprint():
        return DerivationScope(False, "the derivation's code or settings changed")
    since = previous["inputs_until"]
    context = {
        **names,
        "xref": sql.Identifier(identity_schema, "client_xref"),
        "old_xref": sql.Identifier(base_consent, "client_xref"),
        "matches": sql.Identifier(identity_schema, "identity_ambiguous_matches"),
        "old_matches": sql.Identifier(base_consent, "identity_ambiguous_matches"),
        "old_verdicts": sql.Identifier(base_staging, "validation_verdicts"),
        "base": sql.Identifier(base_staging),
    }
    conn.execute(
        "create temp table if not exists scope_records (source text, source_record_id text)"
    )
    conn.execute("truncate scope_records")
    conn.execute("create temp table if not exists scope_clients (client_id text, cause text)")
    conn.execute("truncate scope_clients")
    # records of the new (or reloaded) batches
    for table, (source, key) in RECORD_KEYS.items():
        conn.execute(
            sql.SQL(
                "insert into scope_records select distinct {source}, {key} from staging.{table} "
                "where batch_loaded_at > coalesce(%s, '-infinity') and {key} is not null"
            ).format(source=sql.Literal(source), key=sql.Identifier(key),
                     table=sql.Identifier(table)),
            (since,),
        )  # fmt: skip
    # the records that revocations received through the API name (taken in by this run)
    if relation_exists(conn, "staging", API_STAGED):
        conn.execute(
            sql.SQL(
                "insert into scope_records select distinct subject_source, subject_record_id "
                "from staging.{} where batch_loaded_at > coalesce(%s, '-infinity')"
            ).format(sql.Identifier(API_STAGED)),
            (since,),
        )
    # records of no client (yet) in this run's identity: derived again on every run, see below
    conn.execute(
        "create temp table if not exists unlinked_records (source text, source_record_id text)"
    )
    conn.execute("truncate unlinked_records")
    conn.execute(
        sql.SQL(
            "insert into unlinked_records select source, source_record_id from scope_records r "
            "where not exists (select from {xref} x where x.source = r.source "
            "and x.source_record_id = r.source_record_id)"
        ).format(**context)
    )
    _insert_clients(conn, context, "new batches", "scope_records")
    # rows whose validation verdict changed (a rule that reads the clock or the catalog)
    conn.execute("truncate scope_records")
    conn.execute(
        sql.SQL(
            "create temp table if not exists changed_verdicts as select * from {} where false"
        ).format(names["verdicts"])
    )
    conn.execute("truncate changed_verdicts")
    conn.execute(
        sql.SQL(
            "insert into changed_verdicts "
            "(select * from {new} except select * from {old}) "
            "union (select * from {old} except select * from {new})"
        ).format(new=names["verdicts"], old=context["old_verdicts"])
    )
    for table, (source, key) in RECORD_KEYS.items():
        conn.execute(
            sql.SQL(
                "insert into scope_records select distinct {source}, s.{key} "
                "from staging.{table} s join changed_verdicts v on v.source = {source} "
                "and v.batch_id = s.batch_id and v.file_name = s.file_name "
                "and v.line_number = s.line_number where s.{key} is not null"
            ).format(source=sql.Literal(source), key=sql.Identifier(key),
                     table=sql.Identifier(table))
        )  # fmt: skip
    # records erased or pseudonymised again since the published run was planned
    conn.execute(
        "insert into scope_records select source, source_record_id "
        "from consent.depersonalised_records where executed_at > %s",
        (previous["planned_at"],),
    )
    _insert_clients(conn, context, "validation or erasure", "scope_records")
    conn.execute(
        "insert into scope_clients select client_id, 'validation or erasure' "
        "from consent.depersonalisation_audit "
        "where greatest(executed_at, reapplied_at) > %s",
        (previous["planned_at"],),
    )
    # rule 7: the records a catalog change reaches (only what changed, closed contracts included)
    conn.execute("truncate scope_records")
    _catalog_records(conn, base_staging)
    _insert_clients(conn, context, "catalog", "scope_records")
    # identity: every record whose client changed, its old and its new client
    conn.execute(
        sql.SQL(
            "insert into scope_clients select unnest(array[n.client_id, o.client_id]), "
            "'identity' from {xref} n full join {old_xref} o "
            "using (source, source_record_id) where n.client_id is distinct from o.client_id"
        ).format(**context)
    )
    conn.execute(
        sql.SQL(
            "insert into scope_clients select unnest(array[client_id_l, client_id_r]), 'identity' "
            "from ((select * from {matches} except select * from {old_matches}) "
            "union (select * from {old_matches} except select * from {matches})) d"
        ).format(**context)
    )
    # the clock: an interval, a grant or the end of a grant between the two instants
    low, high = sorted([previous["as_of"], as_of])
    for half in (0, 1):
        history = sql.Identifier(base_staging, f"int_consent_history__half_{half}")
        events = sql.Identifier(base_staging, f"int_consent_key_events__half_{half}")
        conn.execute(
            sql.SQL(
                "insert into scope_clients select distinct client_id, 'clock' from {} "
                "where valid_from > %s and valid_from <= %s"
            ).format(history),
            (low, high),
        )
        conn.execute(
            sql.SQL(
                "insert into scope_clients select distinct client_id, 'clock' from {} "
                "where (effective_at > %(low)s and effective_at <= %(high)s) "
                "or (ends_at > %(low)s and ends_at <= %(high)s)"
            ).format(events),
            {"low": low, "high": high},
        )
    conn.execute("delete from scope_clients where client_id is null")
    # one step across possible matches: their revocations are honoured for each other
    conn.execute(
        sql.SQL(
            "insert into scope_clients select m.other, 'possible match' from ("
            "select client_id_l as one, client_id_r as other from {matches} where not same_client "
            "union all select client_id_r, client_id_l from {matches} where not same_client) m "
            "where m.one in (select client_id from scope_clients) and m.other is not null"
        ).format(**context)
    )
    causes = dict(
        conn.execute(
            "select cause, count(distinct client_id) from scope_clients group by cause order by 1"
        ).fetchall()
    )
    conn.execute(
        sql.SQL("insert into {clients} select distinct client_id from scope_clients").format(
            **context
        )
    )
    (affected,) = conn.execute(
        sql.SQL("select count(*) from {clients}").format(**context)
    ).fetchone()
    (everyone,) = conn.execute(
        sql.SQL("select count(*) from {}").format(sql.Identifier(identity_schema, "golden_client"))
    ).fetchone()
    based_on = base_consent.split("__", 1)[1]
    if affected > max(full_derivation_share() * everyone, FULL_DERIVATION_MIN_CLIENTS):
        conn.execute(sql.SQL("truncate {clients}").format(**context))
        return DerivationScope(
            False, f"{affected} of {everyone} clients affected: one full derivation is cheaper"
        )
    # the records of no client: the published events of records that had none (each run
    # derives them again, so that a record linked since moves to its client, and the others
    # stay as they are), and this run's new records that have none
    for part in ("int_consent_event__direct", "int_consent_event__contracts"):
        conn.execute(
            sql.SQL(
                "insert into unlinked_records select distinct source, source_record_id "
                "from {} where client_id is null"
            ).format(sql.Identifier(base_staging, part))
        )
    # every record of the affected clients, and the records honoured for them across a match
    conn.execute(
        sql.SQL(
            "insert into {records} "
            "select source, source_record_id from {xref} where client_id in (select client_id "
            "from {clients}) "
            "union select source_l, source_record_id_l from {matches} "
            "where not same_client and client_id_r in (select client_id from {clients}) "
            "union select source_r, source_record_id_r from {matches} "
            "where not same_client and client_id_l in (select client_id from {clients}) "
            "union select source, source_record_id from unlinked_records"
        ).format(**context)
    )
    (unlinked,) = conn.execute(
        "select count(*) from (select distinct source, source_record_id from unlinked_records) u"
    ).fetchone()
    if unlinked:
        causes["records of no client"] = unlinked
    return DerivationScope(
        True,
        f"the changes since generation {based_on}",
        based_on=based_on,
        affected_clients=affected,
        causes=causes,
    )


def _insert_clients(conn, context, cause: str, records: str) -> None:
    """The clients of `records`, by this run's identity and by the published one."""
    for xref in ("xref", "old_xref"):
        conn.execute(
            sql.SQL(
                "insert into scope_clients select distinct x.client_id, {cause} from {records} r "
                "join {xref} x using (source, source_record_id)"
            ).format(cause=sql.Literal(cause), records=sql.Identifier(records), xref=context[xref])
        )


#: catalog table -> (the columns that say what it holds, not where or when it was read; what a
#: changed row reaches: consent_code, flag_code, match_kind, match_value)
CATALOG_COLUMNS = {
    "consent_types": (("consent_code", "purpose", "channel", "partner_code", "term_months",
                       "description"), "consent_code, null, null, null"),
    "crm_flag_map": (("flag_code", "consent_code"), "consent_code, flag_code, null, null"),
    "product_matrix": (("rule_id", "match_kind", "match_value", "consent_code",
                        "wording_version", "term_months", "effective_from", "effective_to"),
                       "consent_code, null, match_kind, match_value"),
    "wordings": (("consent_code", "wording_version", "effective_from", "effective_to",
                  "wording_text", "text_sha256"), "consent_code, null, null, null"),
}  # fmt: skip
#: the dbt macro current_catalog_batch_id: the catalog batch this run's models will read
CURRENT_CATALOG_BATCH = (
    "select max(batch_id) from ("
    + " union all ".join(
        f"select max(_batch_id) as batch_id from raw.catalog_{entity} "
        "where _batch_id not like 'preview-%'"
        for entity in ("consent_types", "wordings", "product_matrix", "crm_flag_map")
    )
    + ") b"
)


def _catalog_records(conn: psycopg.Connection, base_staging: str) -> None:
    """Into scope_records: the records whose consents a catalog change may move (rule 7).

    The catalog the published generation was derived from (its int_catalog__* tables) is
    compared row by row with the one in force now. A changed consent type, wording or matrix
    rule reaches every record with an event naming its consent code; a changed flag mapping
    every CRM record carrying that flag; a changed matrix rule every contract it matches (or
    matched), open or closed, in any version staged."""
    (batch,) = conn.execute(CURRENT_CATALOG_BATCH).fetchone()
    conn.execute(
        "create temp table if not exists catalog_changes "
        "(entity text, consent_code text, flag_code text, match_kind text, match_value text)"
    )
    conn.execute("truncate catalog_changes")
    for entity, (columns, pick) in CATALOG_COLUMNS.items():
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        old = sql.SQL("select {} from {}").format(
            cols, sql.Identifier(base_staging, f"int_catalog__{entity}")
        )
        new = sql.SQL("select {} from staging.{} where batch_id = %(batch)s").format(
            cols, sql.Identifier(f"stg_catalog__{entity}")
        )
        conn.execute(
            sql.SQL(
                "insert into catalog_changes select {entity}, " + pick + " from "
                "(({old} except {new}) union ({new} except {old})) d"
            ).format(entity=sql.Literal(entity), old=old, new=new),
            {"batch": batch},
        )
    (changes,) = conn.execute("select count(*) from catalog_changes").fetchone()
    if not changes:
        return
    codes = "(select consent_code from catalog_changes where consent_code is not null)"
    for part in ("int_consent_event__contracts", "int_consent_event__direct"):
        conn.execute(
            sql.SQL(
                "insert into scope_records select distinct source, source_record_id from {} "
                f"where consent_code in {codes}"
            ).format(sql.Identifier(base_staging, part))
        )
    conn.execute(
        "insert into scope_records select distinct 'crm', crm_client_id "
        "from staging.stg_crm__consent_flags where flag_code in "
        "(select flag_code from catalog_changes where flag_code is not null)"
    )
    conn.execute(
        sql.SQL(
            "insert into scope_records select distinct 'crm', c.crm_client_id "
            "from staging.stg_crm__contracts c "
            "join catalog_changes r on r.entity = 'product_matrix' and ("
            "(r.match_kind = 'system_code' and c.system_code = r.match_value) or "
            "(r.match_kind = 'product_type' and c.product_type = r.match_value) or "
            "(r.match_kind = 'contract_mask' and c.contract_number like r.match_value)) "
            "where c.crm_client_id is not null"
        )
    )
