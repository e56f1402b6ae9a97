{#- Hooks the heavy consent models share: session memory, key-order reads, and readiness of a
    freshly built table for the models that read it. -#}

{#- Heavy set-based models sort millions of timeline rows: give their session room to do it in
    memory instead of spilling to disk (the server default stays modest for everyone else).
    CONSENT_DBT_WORK_MEM, when set, overrides every model's size. -#}
{% macro large_sort_memory(size='1GB') -%}
    set work_mem = '{{ env_var("CONSENT_DBT_WORK_MEM", size) }}'
{%- endmacro %}

{#- Models that walk a table key by key read it through its client_id index (the table is
    written in key order, so the index scan is sequential): each client's rows are then sorted
    on their own in memory (incremental sort) instead of one sort of tens of millions of rows.
    `set local`: only for the model's own transaction. -#}
{% macro read_in_key_order() -%}
    set local enable_seqscan = off
{%- endmacro %}

{#- A freshly built table, made ready for its readers before anything downstream is planned:
    statistics now (autovacuum would get there later, by which time the next model may have
    been planned with default estimates: a view over fresh parts once planned a 2-second report
    into minutes of nested loops), and no autovacuum: the table is rebuilt whole on every run and
    never updated, so a background vacuum of its millions of rows would only take a core from
    the models being built next. -#}
{% macro analyze_for_readers() -%}
    alter table {{ this }} set (autovacuum_enabled = false); analyze {{ this }}
{%- endmacro %}

{#- Models built side by side each keep to one core: on 2 cores, parallel workers of one model
    only take the core the other model is using (measured: no gain in a single big model, and
    slower side by side). `set local`: only for the model's own transaction. -#}
{% macro one_core_per_model() -%}
    set local max_parallel_workers_per_gather = 0
{%- endmacro %}

{#- Millions of rows joined to lookups through staged views, whose row estimates PostgreSQL
    cannot know (a DISTINCT ON over a parsed view is estimated at 200 rows): it then picks
    index nested loops for millions of rows (the contracts part of consent_event took 67 s that
    way, 29 s with hash joins). Lateral lookups stay nested loops, as they must, with their
    Memoize cache. `set local`: only for the model's own transaction. -#}
{% macro hash_joins_only() -%}
    set local enable_nestloop = off; set local enable_mergejoin = off
{%- endmacro %}
