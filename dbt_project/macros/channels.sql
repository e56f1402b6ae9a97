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
