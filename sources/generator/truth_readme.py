"""The text of truth/README.md written next to the truth files."""

TRUTH_README = """\
# Truth behind the generated feeds

Written by `consent-center generate` (sources/generator). Everything here is known to
the generator only; the pipeline must not read it. Use it to measure accuracy.

## person_xref.csv
`source, source_record_id, person_id`: the real person behind every person-bearing
record that ingestion loads: `crm` (crm_client_id), `web` (account_id), `helpdesk`
(ticket_id), `partner` (`partner_code:partner_client_id`). Records that exist only in
rows that ingestion must reject (stage `ingest` in bad_rows.csv) are not listed.
Deliberate noise: the same person created twice in the CRM (two crm ids, one person),
namesakes (same full name, different persons), typos, initials, swapped names, upper
case, ё/е, Latin spelling (web, partner), phone formats, missing fields, out-of-date
phones and e-mails, day/month swapped birth dates.

## bad_rows.csv
`source, batch_id, file_name, line_number, record_id, stage, rule, description`: every
deliberately bad row. `line_number` is the physical line (CSV header = line 1; the
first JSON line of events.jsonl = line 1). `record_id` is the source id written in the
row (empty for `missing_required`; for partner `partner_code:partner_client_id`; for
web the event_id - for `invalid_json` it can only be read from the broken text).
Every bad row is an extra row added to a real person's records.
- stage `ingest` (ingestion itself must reject the row): `column_count`,
  `invalid_json`, `invalid_date`, `unknown_value`, `missing_required`,
  `invalid_encoding` (the line is Windows-1251, not UTF-8).
- stage `validate` (the row loads; later validation must catch it):
  `wording_hash_mismatch`, `wording_not_in_force`, `garbled_scope`,
  `unknown_consent_code`.

## expected_status.csv
`person_id, source, source_record_id, purpose, channel, partner_code, at, allowed,
status`: sample questions "may the company contact this person for PURPOSE over
CHANNEL at instant AT", asked through one real, loaded record of the person, so that
`consent-center can-contact --source S --record ID --purpose P --channel C --at AT`
can be checked against `allowed` and `status`. The answers come from
`sources/generator/truth.py`, a deliberately simple implementation of DESIGN section 7
that shares no code with the pipeline, applied to the facts the generator wrote, with
the newest catalog snapshot in force, after all batches are loaded.

Semantic choices (DESIGN section 7 as read here):
1. Timestamps without a zone are Europe/Moscow (+03:00). Date ranges in the catalog
   (`effective_from`..`effective_to`) are inclusive calendar dates compared with the
   Moscow date of the instant.
2. A contract grants every consent of every matrix rule in force at its signing date
   that matches it (system_code equal, product_type equal, or contract number LIKE the
   mask, `%` any run, `_` one character). A rule naming no wording version uses the
   version in force at signing; a named version must be in force at signing, else no
   grant. Term: the rule's `term_months`, else the consent type's.
3. A CRM tick `true` grants its flag's consent from `set_at` for the consent type's term
   (if a wording of that consent is in force then); `false` revokes that consent's
   purpose x channel(s) from `set_at`. Unknown flag codes do nothing.
4. A web consent `granted=true` counts only if its `wording_version` exists, is in force
   on the event date and its `wording_sha256` (when sent) equals the catalog's; it runs
   for the type's term from `occurred_at`. `granted=false` revokes. Unconfirmed web
   consents (`confirmation=none`) count as grants; questions whose answer would differ
   if they did not are left out of the sample.
5. A helpdesk `revoke_consent` revokes scope_purposes x scope_channels (`all` = all)
   from `received_at`. Each axis is read on its own (`;` or `,` between codes; case,
   blanks, `-` and `_` ignored; `any` = all channels); an axis that is empty or has an
   unknown code is honoured as all, the other as written. `restrict_processing` is treated
   as a revocation of its scope;
   persons with `restrict_processing` or `erase_data` requests are not in the sample.
   `access_request` and `complaint` have no consent effect. A quoted contract number
   does not narrow the scope: a revocation applies to the whole person.
6. A partner record `granted=true` grants its consent from `obtained_at` until
   `valid_until`, else for the type's term; `granted=false` revokes that consent. Its
   `restricted_channels` block those channels for the person over the same interval:
   status `restricted`, whatever other grants say. Questions whose answer depends on
   whether a restriction also blocks purpose `processing` are left out.
7. Channel `any` is every concrete channel (call, sms, email, messenger, push, post).
   Partner-specific consents (share_*, third_party_transfer) are not asked about:
   the sample covers purposes `marketing` and `processing` with an empty partner_code.
8. Terms add calendar months; a day past the end of the target month is clamped to the
   month's last day. A grant is valid on [effective, end): at `end` it has expired.
9. Status at t for (purpose, channel): `restricted` if a partner restriction is in force
   on that channel; else `granted` if some grant covers t and no revocation of that
   scope lies in [its effective instant, t] (a revocation at the very instant of a grant
   wins); a grant whose effective instant is before a revocation never re-opens after
   it (e.g. a CRM tick re-exported later with its old set_at); else `revoked` if the
   latest grant or revocation at or before t is a revocation; else `expired` if a grant
   existed; else `none`. `allowed` is true exactly when the status is `granted`.
10. Grants and revocations are counted from the whole person across all sources,
    products and batches, including closed contracts (closing does not end a consent)
    and paper contracts that arrive in a later batch (they count from signing).
11. Persons with a deliberately bad row are not in the sample; neither are questions
    within two minutes of any event or term boundary of the person.
"""
