{#- Heavy set-based models sort millions of timeline rows: give their session room to do it in
    memory instead of spilling to disk (the server default stays modest for everyone else).
    CONSENT_DBT_WORK_MEM, when set, overrides every model's size. -#}
{% macro large_sort_memory(size='1GB') -%}
    set work_mem = '{{ env_var("CONSENT_DBT_WORK_MEM", size) }}'
{%- endmacro %}

{#- Models that walk a table key by key read it through its key index (the table is written in
    key order, so the index scan is sequential): each key's rows are then sorted on their own
    in memory (incremental sort) instead of one sort of tens of millions of rows spilling to
    disk. `set local`: only for the model's own transaction. -#}
{% macro read_in_key_order() -%}
    set local enable_seqscan = off
{%- endmacro %}

{#- Statistics for a freshly built table, before anything downstream is planned against it:
    autovacuum would get there seconds later, by which time the next model may have been planned
    with default estimates (a view over fresh parts once planned a 2-second report into minutes
    of nested loops). -#}
{% macro analyze_for_readers() -%}
    analyze {{ this }}
{%- endmacro %}
