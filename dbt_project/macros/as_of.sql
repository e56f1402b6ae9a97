{#-
    as_of(): the instant of this run, as a timestamptz literal. Every "current" status, report
    and deadline state is computed at it (golden_consent, report_expiring,
    report_revocation_deadlines, report_depersonalisation), never at now().

    It is the dbt var `as_of` when one is given (pipelines/dbt_cli.py's run_dbt), else the
    environment variable CONSENT_DBT_AS_OF, which the pipeline's dbt steps set (CONSENT_NOW,
    else the real now when the run started: assets/transform.py; an environment variable lets
    dbt reparse only the files that read it, where a changed var reparses the whole project).
    A dbt run by hand with neither falls back to CONSENT_NOW, then to the moment this dbt
    invocation started. The value must
    be an ISO 8601 instant (a date alone is its midnight; without a zone, Moscow time): anything
    else is a compilation error. The literal is written from the parsed instant, never from the
    text as given.
-#}
{% macro as_of() -%}
    {%- set given = var('as_of', none) -%}
    {%- if given is none or (given | string | trim) == '' -%}
        {%- set given = env_var('CONSENT_DBT_AS_OF', '') -%}
    {%- endif -%}
    {%- if (given | string | trim) == '' -%}
        {%- set given = env_var('CONSENT_NOW', '') -%}
    {%- endif -%}
    {%- if (given | string | trim) == '' -%}
        {%- set instant = run_started_at -%}
    {%- else -%}
        {%- set instant = parse_as_of(given | string | trim) -%}
    {%- endif -%}
    ('{{ instant.isoformat() }}'::timestamptz)
{%- endmacro %}

{#- The instant an ISO 8601 text names (validated; naive = Europe/Moscow). -#}
{% macro parse_as_of(text) -%}
    {%- set iso = '^\\d{4}-?\\d{2}-?\\d{2}([T ]\\d{2}(:?\\d{2}(:?\\d{2}([.,]\\d{1,6})?)?)?)?(Z|[+-]\\d{2}(:?\\d{2})?)?$' -%}
    {%- if not modules.re.match(iso, text) -%}
        {{ exceptions.raise_compiler_error("var as_of " ~ (text | tojson) ~ " is not an ISO 8601 instant (e.g. 2026-03-01T00:00:00+03:00)") }}
    {%- endif -%}
    {#- the shape is right; the calendar (month 13, 30 February, hour 25) is checked here -#}
    {%- set parts = modules.re.match('^(\\d{4})-?(\\d{2})-?(\\d{2})(?:[T ](\\d{2})(?::?(\\d{2})(?::?(\\d{2}))?)?)?', text).groups() -%}
    {%- set year, month, day = parts[0] | int, parts[1] | int, parts[2] | int -%}
    {%- set leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 -%}
    {%- set month_days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
    {%- if year < 1 or month < 1 or month > 12 or day < 1 or day > month_days[month - 1]
          or (parts[3] or '0') | int > 23 or (parts[4] or '0') | int > 59
          or (parts[5] or '0') | int > 59 -%}
        {{ exceptions.raise_compiler_error("var as_of " ~ (text | tojson) ~ " is not a valid date and time") }}
    {%- endif -%}
    {%- set instant = modules.datetime.datetime.fromisoformat(text) -%}
    {%- if instant.tzinfo is none -%}
        {%- set instant = modules.pytz.timezone('Europe/Moscow').localize(instant) -%}
    {%- endif -%}
    {{ return(instant) }}
{%- endmacro %}

{#-
    reader_instant(): the instant a reader of golden_consent reads at, evaluated when the view
    is read: the session's `consent.now` when set (`set consent.now = '2027-03-01T00:00+03'`, or
    PGOPTIONS='-c consent.now=...'), else now(). An installation whose runs pin the clock
    (CONSENT_NOW set by the operator: a test, a "what did it say on 1 March" rebuild) reads at
    the run's instant instead, so that its golden_consent shows the instant it was built for.
    The run says which through CONSENT_READ_CLOCK (`now` or `as_of`; pipelines/run.py); a dbt
    build by hand reads at as_of when CONSENT_NOW is set, else at now().
-#}
{% macro reader_instant() -%}
    {%- set pinned = env_var('CONSENT_NOW', '') | trim != '' -%}
    {%- set clock = env_var('CONSENT_READ_CLOCK', 'as_of' if pinned else 'now') | trim -%}
    {%- if clock not in ('now', 'as_of') -%}
        {{ exceptions.raise_compiler_error("CONSENT_READ_CLOCK must be 'now' or 'as_of', not " ~ (clock | tojson)) }}
    {%- endif -%}
    coalesce(nullif(current_setting('consent.now', true), '')::timestamptz,
             {{ 'now()' if clock == 'now' else as_of() }})
{%- endmacro %}
