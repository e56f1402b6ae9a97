-- Letters and requests: revocations (and restrictions) for their scope, purposes x channels,
-- from the instant received, for the whole client. An erase request revokes everything: nobody
-- who asked to be erased is contacted.
--
-- Each axis of the scope is read on its own, from the text as written (DESIGN rule 4: when in
-- doubt, do not contact):
--  * codes are separated by ';' or ','; case, surrounding blanks and blanks, '-' or '_' inside a
--    code do not matter ('E-mail' is email, 'Third party transfer' is third_party_transfer);
--    `all` means every code of its axis, and so does `any` on the channels axis;
--  * an axis that is empty or has a code that cannot be read is widened to all: purposes to
--    every purpose, channels to `any`. The other axis keeps what it says;
--  * every widening, and every code read from a variant spelling, is named in doubt_reason
--    (which axis, never the text written).
{% set purposes = consent_purposes() %}
{% set channels = concrete_channels() %}
{#- each axis' codes by spelling key (lower case, no blanks, '-' or '_') -#}
{%- set vocabularies = {'purposes': [('all', 'all')], 'channels': [('all', 'all'), ('any', 'all')]} %}
{%- for code in purposes %}{% do vocabularies['purposes'].append((code | replace('_', ''), code)) %}{% endfor %}
{%- for code in channels %}{% do vocabularies['channels'].append((code | replace('_', ''), code)) %}{% endfor %}
with tickets as (
    select distinct on (ticket_id) *
    from {{ affected_only(ref('stg_helpdesk__tickets'), 'helpdesk', 'ticket_id') }} as t
    where request_type in ('revoke_consent', 'restrict_processing', 'erase_data')
    order by ticket_id, batch_id desc, line_number desc
),

scopes_read as (
    select
        t.*
        {%- for axis in ['purposes', 'channels'] %},
        {{ axis }}.unreadable as {{ axis }}_unreadable,
        {{ axis }}.says_all   as {{ axis }}_says_all,
        {{ axis }}.variant    as {{ axis }}_variant,
        {{ axis }}.codes      as {{ axis }}_read
        {%- endfor %}
    from tickets t
    {%- for axis, vocabulary in vocabularies.items() %}
    cross join lateral (
        -- one row over the axis' codes (none at all: unreadable)
        select
            coalesce(bool_or(known.code is null), true)                         as unreadable,
            coalesce(bool_or(known.code = 'all'), false)                        as says_all,
            coalesce(bool_or(known.code is distinct from code.written), false)
                or t.scope_{{ axis }}_raw like '%,%'                            as variant,
            array_agg(distinct known.code) filter (where known.code is not null) as codes
        from regexp_split_to_table(t.scope_{{ axis }}_raw, '[;,]') as split(text)
        cross join lateral (select btrim(split.text, {{ _trim_chars() }}) as written) as code
        left join (values
            {%- for spelling, code in vocabulary %}
            ('{{ spelling }}', '{{ code }}'){{ ',' if not loop.last }}
            {%- endfor %}
        ) as known(spelling, code)
            on known.spelling = regexp_replace(lower(code.written), '[[:space:]_-]+', '', 'g')
        where code.written <> ''
    ) as {{ axis }}
    {%- endfor %}
),

scoped as (
    select
        r.*,
        case
            when request_type = 'erase_data' or purposes_unreadable or purposes_says_all
                then array[{{ "'" ~ purposes | join("', '") ~ "'" }}]::text[]
            else purposes_read
        end as purposes,
        case
            when request_type = 'erase_data' or channels_unreadable or channels_says_all
                then array['any']::text[]
            else channels_read
        end as channels,
        case when request_type <> 'erase_data' then nullif(concat_ws('; ',
            case when purposes_unreadable then 'scope_purposes_unreadable_widened_to_all' end,
            case when channels_unreadable then 'scope_channels_unreadable_widened_to_all' end,
            case when purposes_variant and not purposes_unreadable
                 then 'scope_purposes_read_from_variant_spelling' end,
            case when channels_variant and not channels_unreadable
                 then 'scope_channels_read_from_variant_spelling' end
        ), '') end as doubt_reason
    from scopes_read r
)

select
    'helpdesk:' || s.ticket_id || ':' || purpose.value || ':' || channel.value as event_id,
    'helpdesk'::text                                               as source,
    s.ticket_id                                                    as source_record_id,
    null::text                                                     as consent_code,
    purpose.value                                                  as purpose,
    channel.value                                                  as channel,
    case when s.request_type = 'restrict_processing' then 'restrict' else 'revoke' end as action,
    s.received_at                                                  as effective_at,
    null::timestamptz                                              as valid_until,
    null::text                                                     as wording_version,
    s.contract_number,
    'helpdesk_request'::text                                       as process,
    s.letter_scan_url                                              as evidence_url,
    case when s.letter_scan_url is not null then 'letter_scan' else 'request_without_scan' end
                                                                   as evidence_level,
    s.doubt_reason,
    s.request_type || ' received by the helpdesk'                  as detail,
    s.batch_id,
    s.file_name,
    s.line_number,
    s.ticket_id                                                    as row_id
from scoped s
cross join lateral unnest(s.purposes) as purpose(value)
cross join lateral unnest(s.channels) as channel(value)
