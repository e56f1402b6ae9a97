{#-
    consent.consent_status_at(client_id, purpose, channel, partner_code, at): the status of one
    consent key at any instant, for analysts and for the `can-contact` command. A key with no
    interval covering the instant has status 'none' (no consent was ever given or refused).
-#}
{% macro create_consent_status_function() %}
create or replace function {{ this.schema }}.consent_status_at(
    p_client_id text, p_purpose text, p_channel text, p_partner_code text, p_at timestamptz
) returns table (status text, valid_from timestamptz, valid_to timestamptz, basis_event_id text)
language sql stable as $fn$
    select coalesce(h.status, 'none'), h.valid_from, h.valid_to, h.basis_event_id
    from (select 1) as one
    left join {{ this }} h
        on h.client_id = p_client_id and h.purpose = p_purpose and h.channel = p_channel
        and h.partner_code = coalesce(p_partner_code, '')
        and h.valid_from <= p_at and (h.valid_to is null or h.valid_to > p_at)
$fn$;
comment on function {{ this.schema }}.consent_status_at(text, text, text, text, timestamptz) is
    'Status (granted, revoked, expired, restricted or none) of a consent key at an instant, with the interval and its basis event.';
{% endmacro %}
