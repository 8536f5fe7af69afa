{#-
  xform's built-in `dbt` macros for Snowflake and BigQuery: the `snowflake__` and `bigquery__`
  versions that `adapter.dispatch(name, 'dbt')` picks for those targets, where a warehouse
  writes the SQL differently from the `default__` versions in dbt_macros.sql. Each gives the
  result dbt-snowflake or dbt-bigquery gives; the SQL is xform's own.
-#}

{#- ------------------------------------------------------------- BigQuery: types -#}

{%- macro bigquery__type_string() -%}{{- return('STRING') -}}{%- endmacro -%}
{%- macro bigquery__type_timestamp() -%}{{- return('TIMESTAMP') -}}{%- endmacro -%}
{%- macro bigquery__type_float() -%}{{- return('FLOAT64') -}}{%- endmacro -%}
{%- macro bigquery__type_numeric() -%}{{- return('NUMERIC') -}}{%- endmacro -%}
{%- macro bigquery__type_bigint() -%}{{- return('INT64') -}}{%- endmacro -%}
{%- macro bigquery__type_int() -%}{{- return('INT64') -}}{%- endmacro -%}
{%- macro bigquery__type_boolean() -%}{{- return('BOOL') -}}{%- endmacro -%}

{#- ------------------------------------------------------- BigQuery: functions -#}

{%- macro bigquery__safe_cast(field, type) -%}
    safe_cast({{ field }} as {{ type }})
{%- endmacro -%}

{%- macro bigquery__cast_bool_to_text(field) -%}
    cast({{ field }} as STRING)
{%- endmacro -%}

{#- The start as a datetime, moved by whole units. -#}
{%- macro bigquery__dateadd(datepart, interval, from_date_or_timestamp) -%}
    datetime_add(cast({{ from_date_or_timestamp }} as datetime), interval {{ interval }} {{ datepart }})
{%- endmacro -%}

{#- Unit boundaries crossed from the first to the second, both as datetimes. -#}
{%- macro bigquery__datediff(first_date, second_date, datepart) -%}
    datetime_diff(cast({{ second_date }} as datetime), cast({{ first_date }} as datetime), {{ datepart }})
{%- endmacro -%}

{%- macro bigquery__date_trunc(datepart, date) -%}
    timestamp_trunc(cast({{ date }} as timestamp), {{ datepart }})
{%- endmacro -%}

{%- macro bigquery__date(year, month, day) -%}
    date({{ year }}, {{ month }}, {{ day }})
{%- endmacro -%}

{%- macro bigquery__current_timestamp() -%}
    current_timestamp()
{%- endmacro -%}

{%- macro bigquery__hash(field) -%}
    to_hex(md5(cast({{ field }} as STRING)))
{%- endmacro -%}

{#- BigQuery's split gives an array: a part is its (1-based) offset; a negative part counts
    from the end, through the number of delimiters in the text. -#}
{%- macro bigquery__split_part(string_text, delimiter_text, part_number) -%}
    {%- if part_number >= 0 -%}
    split({{ string_text }}, {{ delimiter_text }})[safe_offset({{ part_number - 1 }})]
    {%- else -%}
    split({{ string_text }}, {{ delimiter_text }})[safe_offset(
        length({{ string_text }}) - length(replace({{ string_text }}, {{ delimiter_text }}, '')) + 1 + {{ part_number }}
    )]
    {%- endif -%}
{%- endmacro -%}

{%- macro bigquery__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    string_agg({{ measure }}, {{ delimiter_text }}
    {%- if order_by_clause %} {{ order_by_clause }}{% endif %}
    {%- if limit_num %} limit {{ limit_num }}{% endif %})
{%- endmacro -%}

{%- macro bigquery__bool_or(expression) -%}
    logical_or({{ expression }})
{%- endmacro -%}

{%- macro bigquery__position(substring_text, string_text) -%}
    strpos({{ string_text }}, {{ substring_text }})
{%- endmacro -%}

{%- macro bigquery__right(string_text, length_expression) -%}
    case when {{ length_expression }} = 0 then '' else substr({{ string_text }}, -1 * ({{ length_expression }})) end
{%- endmacro -%}

{#- A BigQuery string escapes a quote with a backslash. -#}
{%- macro bigquery__escape_single_quotes(expression) -%}
    {{- expression | replace("'", "\\'") -}}
{%- endmacro -%}

{#- Triple quotes: the value may hold a quote or a line break as it is. -#}
{%- macro bigquery__string_literal(value) -%}
    '''{{ value }}'''
{%- endmacro -%}

{%- macro bigquery__except() -%}
    except distinct
{%- endmacro -%}

{%- macro bigquery__intersect() -%}
    intersect distinct
{%- endmacro -%}

{%- macro bigquery__array_construct(inputs, data_type) -%}
    {%- if inputs | length > 0 -%}
    [{{ inputs | join(', ') }}]
    {%- else -%}
    ARRAY<{{ data_type }}>[]
    {%- endif -%}
{%- endmacro -%}

{%- macro bigquery__array_concat(array_1, array_2) -%}
    array_concat({{ array_1 }}, {{ array_2 }})
{%- endmacro -%}

{%- macro bigquery__array_append(array, new_element) -%}
    array_concat({{ array }}, [{{ new_element }}])
{%- endmacro -%}

{#- ------------------------------------------------------------------ Snowflake -#}

{#- Snowflake's integer type as dbt-snowflake names it. -#}
{%- macro snowflake__type_int() -%}{{- return('INT') -}}{%- endmacro -%}

{#- A text cast that fails gives null; only text can be tried, so the value is made text. -#}
{%- macro snowflake__safe_cast(field, type) -%}
    {%- if type | lower in ['array', 'object', 'variant'] -%}
    cast({{ field }} as {{ type }})
    {%- else -%}
    try_cast(cast({{ field }} as varchar) as {{ type }})
    {%- endif -%}
{%- endmacro -%}

{%- macro snowflake__current_timestamp() -%}
    convert_timezone('UTC', current_timestamp())
{%- endmacro -%}

{%- macro snowflake__bool_or(expression) -%}
    boolor_agg({{ expression }})
{%- endmacro -%}

{%- macro snowflake__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- if limit_num -%}
    array_to_string(array_slice(array_agg({{ measure }})
        {%- if order_by_clause %} within group ({{ order_by_clause }}){% endif %}, 0, {{ limit_num }}), {{ delimiter_text }})
    {%- else -%}
    listagg({{ measure }}, {{ delimiter_text }})
        {%- if order_by_clause %} within group ({{ order_by_clause }}){% endif %}
    {%- endif -%}
{%- endmacro -%}

{#- A Snowflake string escapes a quote with a backslash. -#}
{%- macro snowflake__escape_single_quotes(expression) -%}
    {{- expression | replace("'", "\\'") -}}
{%- endmacro -%}

{%- macro snowflake__array_construct(inputs, data_type) -%}
    array_construct({{ inputs | join(', ') }})
{%- endmacro -%}
