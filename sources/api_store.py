"""The tables the consent API writes (DESIGN section 10): its own store of input, beside the
landing zone's raw tables, created with them (schema.ensure_schema) so that staging can read
received revocations on any installation, served or not.

* `api_key`: one row per key, its role and the sha256 of the key (the key itself is shown once,
  at creation, and never stored).
* `api_access_log`: one row per request that names a client or a record: key name, endpoint,
  client id, record id, instant, status code. Never a personal value.
* `api_revocation`: every revocation received, durable before the caller gets its answer,
  unique per (key, request_id) for idempotency. `client_id` is the client the record belonged to
  at receipt (or the client named); the subject record is the record named, or for a client
  named one of its records at receipt (the run attaches the revocation to that record's
  client). `taken_at` is when a run took it in (assets/api_revocations.py), `fold_event_id`
  the id of the first consent event the run derives from it (int_consent_events__api), which is
  how the API's overlay knows it has been folded (pipelines/api/tables.py).
* `api_acknowledgement`: every "system S applied every change up to ID".
"""

API_DDL = """
create schema if not exists consent;
create table if not exists consent.api_key (
    name        text primary key,
    role        text not null check (role in ('system', 'marketing', 'dpo')),
    key_sha256  text not null unique,
    created_at  timestamptz not null default clock_timestamp(),
    revoked_at  timestamptz
);
comment on table consent.api_key is
    'API keys (consent-center api-key): name, role, sha256 of the key; the key is never stored.';

create table if not exists consent.api_access_log (
    access_id    bigint generated always as identity primary key,
    key_name     text not null,
    endpoint     text not null,
    client_id    text,
    source       text,
    record_id    text,
    accessed_at  timestamptz not null default clock_timestamp(),
    status_code  integer not null
);
create index if not exists api_access_log_client on consent.api_access_log (client_id, accessed_at);
comment on table consent.api_access_log is
    'Every API request that named a client or a record: who (key name), what, when, result.';

create table if not exists consent.api_revocation (
    revocation_id     text primary key,
    key_name          text not null,
    request_id        text not null,
    request_sha256    text not null,
    source            text,
    source_record_id  text,
    client_id         text,
    subject_source    text,
    subject_record_id text,
    purposes          text[] not null,
    channels          text[] not null,
    received_at       timestamptz not null,
    received_via      text not null,
    evidence_url      text,
    doubt_reason      text,
    fold_event_id     text not null,
    created_at        timestamptz not null default clock_timestamp(),
    taken_at          timestamptz,
    unique (key_name, request_id)
);
create index if not exists api_revocation_client on consent.api_revocation (client_id);
create index if not exists api_revocation_record
    on consent.api_revocation (subject_source, subject_record_id);
create index if not exists api_revocation_untaken
    on consent.api_revocation (created_at) where taken_at is null;
comment on table consent.api_revocation is
    'Revocations received through POST /v1/revocations (durable before the answer).';

create table if not exists consent.api_acknowledgement (
    acknowledgement_id bigint generated always as identity primary key,
    system             text not null,
    up_to_change_id    bigint not null,
    key_name           text not null,
    acknowledged_at    timestamptz not null default clock_timestamp()
);
create index if not exists api_acknowledgement_system
    on consent.api_acknowledgement (system, up_to_change_id);
comment on table consent.api_acknowledgement is
    'Downstream systems'' acknowledgements: SYSTEM applied every change up to UP_TO_CHANGE_ID.';
"""
