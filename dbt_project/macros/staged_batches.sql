{#-
   Typed staging, once per batch (issue 18). Each per-batch source has a base view that parses
   its raw table (staging/base/base_<source>__<entity>) and a staged table (stg_<source>__<entity>)
   that holds the parsed rows: an incremental model that takes only the batches it has not
   staged yet, so a daily run parses the day's rows and nothing else, and every reader downstream
   (identity, validation, the consent events) reads typed columns instead of raw text.

   A batch is to be staged when consent.ingest_batches knows it and the table holds none of its
   rows as loaded at that time (`batch_loaded_at` = ingest_batches.finished_at) and typed by the
   base view as it is now (`parsed_by`, a fingerprint of the view's definition): a new batch, one
   loaded again since (a re-load replaces the batch's raw partition), or every batch once a new
   version of the product parses differently. Its old rows are deleted first, in the model's
   transaction, so a batch is replaced, never doubled.

   The list is read when the model runs and written into its SQL as constants, so that
   PostgreSQL prunes the raw table to those batches' partitions at plan time.
-#}

{#- The batch ids of `source_name` that `this` has yet to stage, as a SQL list: ('b1', 'b2').
    Empty (`(null)`, which matches nothing) when there are none, or on a first build, which
    takes every batch anyway. -#}
{% macro batches_to_stage(source_name, base_model) -%}
    {%- set ids = [] -%}
    {%- if execute and is_incremental() -%}
        {%- set query -%}
            select i.batch_id
            from {{ source('quality', 'ingest_batches') }} i
            where i.source = '{{ source_name }}'
              and not exists (
                  select 1 from {{ this }} s
                  where s.batch_id = i.batch_id and s.batch_loaded_at = i.finished_at
                    and s.parsed_by = {{ parser_fingerprint(base_model) }}
              )
            order by i.batch_id
        {%- endset -%}
        {%- set ids = run_query(query).columns[0].values() -%}
    {%- endif -%}
    {%- if ids | length == 0 -%}
        (null)
    {%- else -%}
        ({%- for id in ids -%}'{{ id | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor -%})
    {%- endif -%}
{%- endmacro %}

{#- The rows of a staged table that its next batches replace (pre-hook; same transaction). -#}
{% macro unstage_batches(source_name, base_model) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where batch_id in {{ batches_to_stage(source_name, base_model) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The base view's definition as PostgreSQL holds it now (macros included), fingerprinted: a
    SQL literal. dbt compiles a model just before it runs, after its base view was rebuilt. -#}
{% macro parser_fingerprint(base_model) -%}
    {%- if execute -%}
        {%- set query -%}
            select left(md5(pg_get_viewdef('{{ ref(base_model) }}'::regclass)), 12)
        {%- endset -%}
        '{{ run_query(query).columns[0].values()[0] }}'
    {%- else -%}
        ''
    {%- endif -%}
{%- endmacro %}
