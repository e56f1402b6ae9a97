"""Every form-validation rule, as one SQL query over a staged dbt view (pushed down to PostgreSQL).

A rule's query returns the failing rows only, as lineage and ids (never personal data):
`batch_id, file_name, line_number, record_id, severity`. `{batch}` stands for the staged view the
suite validates: Great Expectations substitutes its batch there (UnexpectedRowsExpectation), and
the writer substitutes the view itself when it copies failing rows to consent.dq_rejections with
one INSERT ... SELECT. No rule ever pulls a table into Python.

Severity (DESIGN section 7, rule 4): `reject` = the row must not count as a grant; `warn` =
suspicious, kept. A rule on a row that can be a revocation computes its severity per row: a
doubtful revocation is still honoured (`warn`), a doubtful grant is not counted (`reject`).
"""

from __future__ import annotations

from dataclasses import dataclass

PURPOSES = ("processing", "storage", "third_party_transfer", "marketing", "analytics")
CHANNELS = ("call", "sms", "email", "messenger", "push", "post", "any")
REQUEST_TYPES = (
    "revoke_consent",
    "erase_data",
    "restrict_processing",
    "access_request",
    "complaint",
)
EVENT_TYPES = ("registration", "consent_given", "consent_withdrawn", "profile_update")
CONFIRMATIONS = ("none", "email_link", "sms_code", "esia")
MATCH_KINDS = ("system_code", "product_type", "contract_mask")

# severity of a row that is a grant when `cond` holds and a revocation otherwise
GRANT_REJECT = "case when {cond} then 'reject' else 'warn' end"

# the Moscow calendar date of an instant (catalog ranges are inclusive Moscow dates)
MSK_DATE = "(({col}) at time zone 'Europe/Moscow')::date"

# the run's instant (dbt var `as_of`: CONSENT_NOW, else the real now), as the last staging build
# recorded it: "in the future" means after it, never after the database's now()
AS_OF = "(select as_of from staging.stg_run__as_of)"

CURRENT_TYPES = (
    "select consent_code from staging.stg_catalog__consent_types where is_current_snapshot"
)
CURRENT_FLAGS = "select flag_code from staging.stg_catalog__crm_flag_map where is_current_snapshot"
CURRENT_WORDINGS = "staging.stg_catalog__wordings"


# a period that is a valid range (an inverted one is its own finding)
_SANE = (
    "({a}.effective_from is not null "
    "and ({a}.effective_to is null or {a}.effective_to >= {a}.effective_from))"
)


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


@dataclass(frozen=True)
class Rule:
    code: str
    model: str  # staged dbt view (schema staging)
    source: str
    field: str
    reason: str  # names the problem, never the value
    severity: str  # SQL expression over alias t, or a literal 'reject' / 'warn'
    where: str  # SQL condition over alias t (the staged row); may use sub-queries
    record_id: str = "t.source_record_id"
    from_: str = "{batch} as t"  # FROM clause (alias t for the validated row)

    @property
    def blocking(self) -> bool:
        """A rejecting catalog rule: failing in the catalog in force, it stops derivation."""
        return self.source == "catalog" and self.severity == "'reject'"

    @property
    def description(self) -> str:
        return f"[{self.code}] {self.reason}"

    def failing_rows_query(self) -> str:
        """The failing rows of the staged view: lineage, record id and severity only."""
        return (
            f"select t.batch_id, t.file_name, t.line_number, ({self.record_id})::text as record_id,"
            f" {self.severity} as severity from {self._from()} where {self.where}"
        )

    def _from(self) -> str:
        # GX aliases the batch sub-select itself unless the query has a JOIN: wrap it once more
        # so that `{batch} as t` is valid SQL either way
        return self.from_.replace("{batch} as ", "(select * from {batch}) as ")

    def query_for(self, relation: str) -> str:
        return self.failing_rows_query().format(batch=relation)


def _duplicate(model: str, source: str, key: str, record_id: str, severity: str = "'warn'"):
    """Rows whose source id occurs more than once in the same batch (all copies reported)."""
    return Rule(
        code="duplicate_source_id",
        model=model,
        source=source,
        field=key.split(",")[0].strip(),
        reason=f"source id ({key}) occurs more than once in the batch",
        severity=severity,
        record_id=record_id,
        from_=(
            f"(select s.*, count(*) over (partition by s.batch_id, {key}) as copies "
            "from {batch} as s) as t"
        ),
        where="t.copies > 1",
    )


def _birth_date(model: str, source: str, at: str, record_id: str = "t.source_record_id") -> Rule:
    return Rule(
        code="implausible_birth_date",
        model=model,
        source=source,
        field="birth_date",
        reason="birth date before 1900 or less than 14 years before the record",
        severity="'warn'",
        record_id=record_id,
        where=(
            f"t.birth_date is not null and (t.birth_date < date '1900-01-01' or "
            f"t.birth_date > coalesce({MSK_DATE.format(col=at)}, {MSK_DATE.format(col=AS_OF)})"
            " - interval '14 years')"
        ),
    )


def _future(model, source, field, severity, record_id, from_="{batch} as t", col=None) -> Rule:
    return Rule(
        code="signed_in_future",
        model=model,
        source=source,
        field=field,
        reason=f"{field} is later than the validation time",
        severity=severity,
        record_id=record_id,
        from_=from_,
        where=f"{col or 't.' + field} > {AS_OF}",
    )


def _required(model, source, fields: tuple[str, ...], record_id, severity="'reject'") -> Rule:
    return Rule(
        code="missing_required",
        model=model,
        source=source,
        field=";".join(fields),
        reason=f"a required field is empty ({', '.join(fields)})",
        severity=severity,
        record_id=record_id,
        where=" or ".join(f"t.{f} is null" for f in fields),
    )


def _allowed(model, source, field, allowed, record_id, severity="'reject'") -> Rule:
    return Rule(
        code="unknown_code",
        model=model,
        source=source,
        field=field,
        reason=f"{field} is not one of: {', '.join(allowed)}",
        severity=severity,
        record_id=record_id,
        where=f"t.{field} is not null and t.{field} not in {_in(allowed)}",
    )


# --- web: consent elements (record id event_id#consent_index, as ingestion writes it) --------
WEB_CONSENT_ID = "t.event_id || '#' || t.consent_index"
WEB_GRANT = GRANT_REJECT.format(cond="t.granted is not false")
# the element joined to its event (same batch, file and line), for the signing instant
WEB_WITH_EVENT = (
    "(select c.*, e.occurred_at, e.evidence_url from {batch} as c "
    "left join staging.stg_web__events as e on e.batch_id = c.batch_id "
    "and e.file_name = c.file_name and e.line_number = c.line_number) as t"
)
# the cited wording in the catalog in force, if it exists
WORDING_CITED = (
    f"select 1 from {CURRENT_WORDINGS} as w where w.is_current_snapshot "
    "and w.consent_code = t.consent_code and w.wording_version = t.wording_version"
)
KNOWN_CODE = f"t.consent_code in ({CURRENT_TYPES})"

WEB_CONSENTS = "stg_web__event_consents"
WEB_EVENTS = "stg_web__events"

RULES: tuple[Rule, ...] = (
    # ---------------------------------------------------------------- web consent elements
    _required(
        WEB_CONSENTS,
        "web",
        ("event_id", "consent_index", "consent_code"),
        WEB_CONSENT_ID,
        WEB_GRANT,
    ),
    Rule(
        code="unknown_consent_code",
        model=WEB_CONSENTS,
        source="web",
        field="consent_code",
        reason="consent_code is not a consent type of the catalog in force",
        severity=WEB_GRANT,
        record_id=WEB_CONSENT_ID,
        where=f"t.consent_code is not null and not {KNOWN_CODE}",
    ),
    Rule(
        code="unknown_wording_version",
        model=WEB_CONSENTS,
        source="web",
        field="wording_version",
        reason="granted with a wording version missing or not in the catalog in force",
        severity="'reject'",
        record_id=WEB_CONSENT_ID,
        where=f"t.granted and {KNOWN_CODE} and not exists ({WORDING_CITED})",
    ),
    Rule(
        code="wording_not_in_force",
        model=WEB_CONSENTS,
        source="web",
        field="wording_version",
        reason="granted with a wording version that was not in force at the signing instant",
        severity="'reject'",
        record_id=WEB_CONSENT_ID,
        from_=WEB_WITH_EVENT,
        where=(
            f"t.granted and {KNOWN_CODE} and exists ({WORDING_CITED}) and not exists "
            f"({WORDING_CITED} and {MSK_DATE.format(col='t.occurred_at')} "
            "between w.effective_from and coalesce(w.effective_to, date 'infinity'))"
        ),
    ),
    Rule(
        code="wording_hash_mismatch",
        model=WEB_CONSENTS,
        source="web",
        field="wording_sha256",
        reason="the text hash sent with the grant differs from the catalog's for that version",
        severity="'reject'",
        record_id=WEB_CONSENT_ID,
        where=(
            f"t.granted and t.wording_sha256 is not null and {KNOWN_CODE} "
            f"and exists ({WORDING_CITED}) "
            f"and not exists ({WORDING_CITED} and w.text_sha256 = t.wording_sha256)"
        ),
    ),
    Rule(
        code="missing_evidence",
        model=WEB_CONSENTS,
        source="web",
        field="evidence_url",
        reason="web grant without an evidence (form log) URL",
        severity="'warn'",
        record_id=WEB_CONSENT_ID,
        from_=WEB_WITH_EVENT,
        where="t.granted and t.evidence_url is null",
    ),
    _future(WEB_CONSENTS, "web", "occurred_at", WEB_GRANT, WEB_CONSENT_ID, WEB_WITH_EVENT),
    _duplicate(WEB_CONSENTS, "web", "s.event_id, s.consent_index", WEB_CONSENT_ID),
    # ---------------------------------------------------------------- web events
    _required(WEB_EVENTS, "web", ("event_id", "occurred_at", "account_id"), "t.event_id", "'warn'"),
    _allowed(WEB_EVENTS, "web", "event_type", EVENT_TYPES, "t.event_id", "'warn'"),
    _allowed(WEB_EVENTS, "web", "confirmation", CONFIRMATIONS, "t.event_id", "'warn'"),
    _birth_date(WEB_EVENTS, "web", "t.occurred_at", "t.event_id"),
    _duplicate(WEB_EVENTS, "web", "s.event_id", "t.event_id"),
    # ---------------------------------------------------------------- crm consent ticks
    _required(
        "stg_crm__consent_flags",
        "crm",
        ("crm_client_id", "flag_code", "flag_value", "set_at"),
        "t.crm_client_id || ':' || t.flag_code",
        GRANT_REJECT.format(cond="t.flag_value is not false"),
    ),
    Rule(
        code="unknown_consent_code",
        model="stg_crm__consent_flags",
        source="crm",
        field="flag_code",
        reason="flag_code is not in the CRM flag map of the catalog in force",
        severity=GRANT_REJECT.format(cond="t.flag_value is not false"),
        record_id="t.crm_client_id || ':' || t.flag_code",
        where=f"t.flag_code is not null and t.flag_code not in ({CURRENT_FLAGS})",
    ),
    Rule(
        code="missing_evidence",
        model="stg_crm__consent_flags",
        source="crm",
        field="scan_url",
        reason="CRM tick set to true with neither a scan URL nor an operator (set_by) log",
        severity="'warn'",
        record_id="t.crm_client_id || ':' || t.flag_code",
        where="t.flag_value and t.scan_url is null and t.set_by is null",
    ),
    _future(
        "stg_crm__consent_flags",
        "crm",
        "set_at",
        GRANT_REJECT.format(cond="t.flag_value is not false"),
        "t.crm_client_id || ':' || t.flag_code",
    ),
    # ---------------------------------------------------------------- crm contracts
    _required(
        "stg_crm__contracts",
        "crm",
        ("contract_id", "crm_client_id", "contract_number", "signed_at"),
        "t.contract_id",
    ),
    Rule(
        code="contract_mask_mismatch",
        model="stg_crm__contracts",
        source="crm",
        field="contract_number",
        reason="contract number does not match the contract mask its product uses",
        severity="'warn'",
        record_id="t.contract_id",
        # a product's masks: the catalog's contract_mask rules that most of its contracts match
        from_=(
            "(select s.*, m.masks from {batch} as s left join ("
            "  select h.product_type, array_agg(h.match_value) as masks from ("
            "    select x.product_type, r.match_value, count(*) as n,"
            "           count(*) filter (where x.contract_number like r.match_value) as hits"
            "    from staging.stg_crm__contracts as x cross join ("
            "      select distinct match_value from staging.stg_catalog__product_matrix"
            "      where is_current_snapshot and match_kind = 'contract_mask') as r"
            "    group by x.product_type, r.match_value) as h"
            "  where h.hits * 2 > h.n group by h.product_type"
            ") as m on m.product_type = s.product_type) as t"
        ),
        where=(
            "t.contract_number is not null and ("
            "t.contract_number !~ '^[A-Z]+(-[A-Z]+)*-[0-9][0-9][0-9][0-9]-[0-9]+$' or ("
            "t.masks is not null and not t.contract_number like any (t.masks)))"
        ),
    ),
    _future("stg_crm__contracts", "crm", "signed_at", "'reject'", "t.contract_id"),
    Rule(
        code="effective_range_inverted",
        model="stg_crm__contracts",
        source="crm",
        field="closed_at",
        reason="contract closed before it was signed",
        severity="'reject'",
        record_id="t.contract_id",
        where="t.closed_at < t.signed_at",
    ),
    Rule(
        code="missing_evidence",
        model="stg_crm__contracts",
        source="crm",
        field="scan_url",
        reason="contract without a scan URL of the signed paper",
        severity="'warn'",
        record_id="t.contract_id",
        where="t.scan_url is null",
    ),
    _duplicate("stg_crm__contracts", "crm", "s.contract_id", "t.contract_id"),
    # ---------------------------------------------------------------- crm clients
    _birth_date("stg_crm__clients", "crm", "t.updated_at"),
    _duplicate("stg_crm__clients", "crm", "s.crm_client_id", "t.crm_client_id"),
    # ---------------------------------------------------------------- helpdesk tickets
    _required(
        "stg_helpdesk__tickets",
        "helpdesk",
        ("ticket_id", "received_at", "request_type"),
        "t.ticket_id",
        "'warn'",
    ),
    _allowed(
        "stg_helpdesk__tickets", "helpdesk", "request_type", REQUEST_TYPES, "t.ticket_id", "'warn'"
    ),
    Rule(
        code="garbled_scope",
        model="stg_helpdesk__tickets",
        source="helpdesk",
        field="scope_purposes;scope_channels",
        reason="revocation scope empty, with unknown purpose/channel codes or in a variant "
        "spelling (an unreadable axis is honoured as all, the other as written; "
        "consent_event.doubt_reason names the axis)",
        severity="'warn'",
        record_id="t.ticket_id",
        where=(
            "t.request_type in ('revoke_consent', 'restrict_processing') and ("
            "t.scope_purposes is null or t.scope_channels is null"
            " or cardinality(t.scope_purposes) = 0 or cardinality(t.scope_channels) = 0"
            f" or not t.scope_purposes <@ array{list((*PURPOSES, 'all'))}::text[]"
            f" or not t.scope_channels <@ array{list((*CHANNELS, 'all'))}::text[])"
        ),
    ),
    _future("stg_helpdesk__tickets", "helpdesk", "received_at", "'warn'", "t.ticket_id"),
    Rule(
        code="effective_range_inverted",
        model="stg_helpdesk__tickets",
        source="helpdesk",
        field="closed_at",
        reason="ticket closed before it was received",
        severity="'warn'",
        record_id="t.ticket_id",
        where="t.closed_at < t.received_at",
    ),
    _birth_date("stg_helpdesk__tickets", "helpdesk", "t.received_at"),
    _duplicate("stg_helpdesk__tickets", "helpdesk", "s.ticket_id", "t.ticket_id"),
    # ---------------------------------------------------------------- partner feed
    _required(
        "stg_partner__clients",
        "partner",
        ("partner_code", "partner_client_id"),
        "t.source_record_id",
        "'warn'",
    ),
    Rule(
        code="unknown_consent_code",
        model="stg_partner__clients",
        source="partner",
        field="consent_code",
        reason="consent_code is not a consent type of the catalog in force",
        severity=GRANT_REJECT.format(cond="t.granted is not false"),
        where=f"t.consent_code is not null and not {KNOWN_CODE}",
    ),
    Rule(
        code="unknown_channel",
        model="stg_partner__clients",
        source="partner",
        field="restricted_channels",
        reason="restricted_channels has unknown channel codes (the restriction is still applied)",
        severity="'warn'",
        where=(
            f"not coalesce(t.restricted_channels, array[]::text[]) <@ array{list(CHANNELS)}::text[]"
        ),
    ),
    Rule(
        code="effective_range_inverted",
        model="stg_partner__clients",
        source="partner",
        field="valid_until",
        reason="consent valid_until is not after obtained_at",
        severity=GRANT_REJECT.format(cond="t.granted is not false"),
        where="t.valid_until <= t.obtained_at",
    ),
    Rule(
        code="missing_evidence",
        model="stg_partner__clients",
        source="partner",
        field="evidence_url",
        reason="partner grant without an evidence URL",
        severity="'warn'",
        where="t.granted and t.evidence_url is null",
    ),
    _future(
        "stg_partner__clients",
        "partner",
        "obtained_at",
        GRANT_REJECT.format(cond="t.granted is not false"),
        "t.source_record_id",
    ),
    _birth_date("stg_partner__clients", "partner", "t.obtained_at"),
    _duplicate(
        "stg_partner__clients",
        "partner",
        "s.partner_code, s.partner_client_id",
        "t.source_record_id",
    ),
    # ---------------------------------------------------------------- catalog (blocking)
    Rule(
        code="catalog_unknown_consent_type",
        model="stg_catalog__product_matrix",
        source="catalog",
        field="consent_code",
        reason="matrix rule names a consent type missing from the same catalog batch",
        severity="'reject'",
        record_id="t.rule_id",
        where=(
            "not exists (select 1 from staging.stg_catalog__consent_types as k "
            "where k.batch_id = t.batch_id and k.consent_code = t.consent_code)"
        ),
    ),
    Rule(
        code="catalog_unknown_wording",
        model="stg_catalog__product_matrix",
        source="catalog",
        field="wording_version",
        reason="matrix rule names a wording version missing from the same catalog batch",
        severity="'reject'",
        record_id="t.rule_id",
        where=(
            "t.wording_version is not null and not exists (select 1 from "
            "staging.stg_catalog__wordings as w where w.batch_id = t.batch_id "
            "and w.consent_code = t.consent_code and w.wording_version = t.wording_version)"
        ),
    ),
    Rule(
        code="catalog_overlapping_rules",
        model="stg_catalog__product_matrix",
        source="catalog",
        field="effective_from;effective_to",
        reason="two matrix rules for the same product and consent overlap in time",
        severity="'reject'",
        record_id="t.rule_id",
        where=(
            _SANE.format(a="t") + " and "
            "exists (select 1 from staging.stg_catalog__product_matrix as o "
            "where o.batch_id = t.batch_id and o.line_number <> t.line_number "
            "and o.match_kind = t.match_kind and o.match_value = t.match_value "
            "and o.consent_code = t.consent_code and " + _SANE.format(a="o") + " and "
            "daterange(o.effective_from, o.effective_to, '[]') "
            "&& daterange(t.effective_from, t.effective_to, '[]'))"
        ),
    ),
    Rule(
        code="effective_range_inverted",
        model="stg_catalog__product_matrix",
        source="catalog",
        field="effective_to",
        reason="matrix rule ends before it starts",
        severity="'reject'",
        record_id="t.rule_id",
        where="t.effective_to < t.effective_from",
    ),
    _allowed("stg_catalog__product_matrix", "catalog", "match_kind", MATCH_KINDS, "t.rule_id"),
    _duplicate("stg_catalog__product_matrix", "catalog", "s.rule_id", "t.rule_id", "'reject'"),
    Rule(
        code="catalog_unknown_consent_type",
        model="stg_catalog__wordings",
        source="catalog",
        field="consent_code",
        reason="wording of a consent type missing from the same catalog batch",
        severity="'reject'",
        record_id="t.consent_code || ':' || t.wording_version",
        where=(
            "not exists (select 1 from staging.stg_catalog__consent_types as k "
            "where k.batch_id = t.batch_id and k.consent_code = t.consent_code)"
        ),
    ),
    Rule(
        code="effective_range_inverted",
        model="stg_catalog__wordings",
        source="catalog",
        field="effective_to",
        reason="wording goes out of force before it comes into force",
        severity="'reject'",
        record_id="t.consent_code || ':' || t.wording_version",
        where="t.effective_to < t.effective_from",
    ),
    Rule(
        code="catalog_text_hash_mismatch",
        model="stg_catalog__wordings",
        source="catalog",
        field="text_sha256",
        reason="text_sha256 is not the SHA-256 of the wording text",
        severity="'reject'",
        record_id="t.consent_code || ':' || t.wording_version",
        where=(
            "t.text_sha256 is distinct from "
            "encode(sha256(convert_to(coalesce(t.wording_text, ''), 'UTF8')), 'hex')"
        ),
    ),
    Rule(
        code="catalog_overlapping_wordings",
        model="stg_catalog__wordings",
        source="catalog",
        field="effective_from;effective_to",
        reason="two versions of the same consent wording are in force on the same day",
        severity="'warn'",
        record_id="t.consent_code || ':' || t.wording_version",
        where=(
            _SANE.format(a="t") + " and "
            "exists (select 1 from staging.stg_catalog__wordings as o "
            "where o.batch_id = t.batch_id and o.line_number <> t.line_number "
            "and o.consent_code = t.consent_code and " + _SANE.format(a="o") + " and "
            "daterange(o.effective_from, o.effective_to, '[]') "
            "&& daterange(t.effective_from, t.effective_to, '[]'))"
        ),
    ),
    _duplicate(
        "stg_catalog__wordings",
        "catalog",
        "s.consent_code, s.wording_version",
        "t.consent_code || ':' || t.wording_version",
        "'reject'",
    ),
    _allowed("stg_catalog__consent_types", "catalog", "purpose", PURPOSES, "t.consent_code"),
    _allowed("stg_catalog__consent_types", "catalog", "channel", CHANNELS, "t.consent_code"),
    _duplicate(
        "stg_catalog__consent_types", "catalog", "s.consent_code", "t.consent_code", "'reject'"
    ),
    Rule(
        code="catalog_unknown_consent_type",
        model="stg_catalog__crm_flag_map",
        source="catalog",
        field="consent_code",
        reason="CRM flag mapped to a consent type missing from the same catalog batch",
        severity="'reject'",
        record_id="t.flag_code",
        where=(
            "not exists (select 1 from staging.stg_catalog__consent_types as k "
            "where k.batch_id = t.batch_id and k.consent_code = t.consent_code)"
        ),
    ),
    _duplicate("stg_catalog__crm_flag_map", "catalog", "s.flag_code", "t.flag_code", "'reject'"),
)

MODELS: tuple[str, ...] = tuple(dict.fromkeys(r.model for r in RULES))
SOURCE_OF_MODEL = {r.model: r.source for r in RULES}


def rules_for(model: str) -> list[Rule]:
    return [r for r in RULES if r.model == model]
