{#- The purposes a consent can have (DESIGN section 6). -#}
{% macro consent_purposes() -%}
    {{ return(['processing', 'storage', 'third_party_transfer', 'marketing', 'analytics']) }}
{%- endmacro %}

{#- The concrete contact channels (DESIGN section 6); `any` (or `all`) in a source means all six. -#}
{% macro concrete_channels() -%}
    {{ return(['call', 'sms', 'email', 'messenger', 'push', 'post']) }}
{%- endmacro %}

{#- A row of the key events, history or golden parts stands either for one concrete channel key
    or, under channel `any`, for all six keys of a channel-uniform group at once (their events,
    and so their histories, are the same; macros/consent_key_events.sql). Joined on
    `key_channel`, this relation gives each stored row the concrete channels it stands for: the
    public consent_history and golden_consent views always show concrete channels. -#}
{% macro key_channels(alias) -%}
    (values
    {%- for channel in concrete_channels() %}
        ('any', '{{ channel }}'), ('{{ channel }}', '{{ channel }}'){{ ',' if not loop.last }}
    {%- endfor %}
    ) as {{ alias }} (key_channel, channel)
{%- endmacro %}

{#- A public view over the two halves of a stored model (`<model>__half_0/1`), each stored row
    shown on every concrete channel it stands for: consent_history and golden_consent.
    `columns` are the view's columns in order; `channel` is the concrete one. -#}
{% macro halves_on_concrete_channels(model, columns) -%}
select
    {%- for column in columns %}
    {{ 'c.channel' if column == 'channel' else 'h.' ~ column }}{{ ',' if not loop.last }}
    {%- endfor %}
from (
    select * from {{ with_unaffected(ref(model ~ '__half_0')) }} as half_0
    union all
    select * from {{ with_unaffected(ref(model ~ '__half_1')) }} as half_1
) h
join {{ key_channels('c') }} on c.key_channel = h.channel
{%- endmacro %}
