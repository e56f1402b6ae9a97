{#-
   Incremental derivation (DESIGN section 12; pipelines/derivation_scope.py). A daily run derives
   only the clients its changes reach: Python computes them first, into
   <affected_schema>.affected_clients (client_id) and <affected_schema>.affected_records
   (source, source_record_id: every record of those clients, and every record whose revocation
   is honoured for one of them across a possible identity match), and passes the schema as the
   dbt var `affected_schema`. The models then read:
    * the staged rows of those records only (affected_only), at the roots of consent_event;
    * nothing else: key events, history and golden consent are per client, so those clients'
      events make those clients' rows (of_affected_clients filters what the roots let through);
    * for the reports and the public views, which read every client, the run's rows of the
      affected clients plus the published generation's rows of every other client
      (with_unaffected; the dbt var `published_schema` names its staging schema).
   The publication then replaces the affected clients' rows of the published parts in one
   transaction (pipelines/publication.py). Without the var (a full derivation, a hand build,
   the unit tests) every macro here is the identity: the models derive every client.
-#}

{#- The schema of the run's affected clients and records; none in a full derivation, and in
    a unit test (its given rows are the whole input). -#}
{% macro affected_schema() -%}
{%- if model is defined and model is not none and model.resource_type == 'unit_test' -%}
{{ return(none) }}
{%- endif -%}
{{ return(var('affected_schema', none)) }}
{%- endmacro %}

{#- The staged rows of the affected records (key: the column that is the source's
    source_record_id), or the whole relation in a full derivation. -#}
{% macro affected_only(relation, source, key) -%}
{%- if affected_schema() -%}
(select * from {{ relation }} where {{ key }} in (
    select source_record_id from {{ affected_schema() }}.affected_records
    where source = '{{ source }}'))
{%- else -%}
{{ relation }}
{%- endif -%}
{%- endmacro %}

{#- A predicate: `column` names an affected client (always true in a full derivation). -#}
{% macro of_affected_clients(column) -%}
{%- if affected_schema() -%}
{{ column }} in (select client_id from {{ affected_schema() }}.affected_clients)
{%- else -%}
true
{%- endif -%}
{%- endmacro %}

{#- A per-client part as readers see it after the publication: this run's rows (the affected
    clients) and the published rows of every other client. -#}
{% macro with_unaffected(relation) -%}
{%- if affected_schema() -%}
(select * from {{ relation }}
 union all
 select * from {{ adapter.quote(var('published_schema')) }}.{{ adapter.quote(relation.identifier) }}
 where client_id not in (select client_id from {{ affected_schema() }}.affected_clients))
{%- else -%}
{{ relation }}
{%- endif -%}
{%- endmacro %}
