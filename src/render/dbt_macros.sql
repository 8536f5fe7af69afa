{#-
  xform's built-in macros of the `dbt` package: the cross-database helpers that a project calls
  as `dbt.dateadd(...)`, `dbt.type_string()` or plain `dateadd(...)`.

  Each public macro hands its arguments to `adapter.dispatch(name, 'dbt')`, which picks a
  project's own `duckdb__name` / `default__name` first and then the versions below. The argument
  names, their order and their defaults are dbt's, since projects pass them by keyword. A
  `duckdb__` version is only written where dbt-duckdb produces different SQL from dbt's default;
  a later dialect adds its own `<adapter>__` versions next to them.

  Type names are the ones dbt-duckdb's column class gives (`string` becomes `TEXT`, the others
  keep their name, `numeric` gets precision 28 and scale 6).
-#}

{#- ---------------------------------------------------------------- data types -#}

{%- macro type_string() -%}
    {{- return(adapter.dispatch('type_string', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_string() -%}
    {{- return('TEXT') -}}
{%- endmacro -%}

{%- macro type_timestamp() -%}
    {{- return(adapter.dispatch('type_timestamp', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_timestamp() -%}
    {{- return('timestamp') -}}
{%- endmacro -%}

{%- macro type_float() -%}
    {{- return(adapter.dispatch('type_float', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_float() -%}
    {{- return('float') -}}
{%- endmacro -%}

{%- macro type_numeric() -%}
    {{- return(adapter.dispatch('type_numeric', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_numeric() -%}
    {{- return('numeric(28,6)') -}}
{%- endmacro -%}

{%- macro type_bigint() -%}
    {{- return(adapter.dispatch('type_bigint', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_bigint() -%}
    {{- return('bigint') -}}
{%- endmacro -%}

{%- macro type_int() -%}
    {{- return(adapter.dispatch('type_int', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_int() -%}
    {{- return('integer') -}}
{%- endmacro -%}

{%- macro type_boolean() -%}
    {{- return(adapter.dispatch('type_boolean', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__type_boolean() -%}
    {{- return('boolean') -}}
{%- endmacro -%}

{#- ---------------------------------------------------------------- casts -#}

{%- macro cast(field, type) -%}
    {{- return(adapter.dispatch('cast', 'dbt')(field, type)) -}}
{%- endmacro -%}

{%- macro default__cast(field, type) -%}
    cast({{ field }} as {{ type }})
{%- endmacro -%}

{#- dbt's default is a plain cast, and dbt-duckdb keeps it: a bad value is an error, not null -#}
{%- macro safe_cast(field, type) -%}
    {{- return(adapter.dispatch('safe_cast', 'dbt')(field, type)) -}}
{%- endmacro -%}

{%- macro default__safe_cast(field, type) -%}
    cast({{ field }} as {{ type }})
{%- endmacro -%}

{%- macro cast_bool_to_text(field) -%}
    {{- return(adapter.dispatch('cast_bool_to_text', 'dbt')(field)) -}}
{%- endmacro -%}

{%- macro default__cast_bool_to_text(field) -%}
    cast({{ field }} as TEXT)
{%- endmacro -%}

{#- ---------------------------------------------------------------- dates and times -#}

{%- macro dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{- return(adapter.dispatch('dateadd', 'dbt')(datepart, interval, from_date_or_timestamp)) -}}
{%- endmacro -%}

{%- macro default__dateadd(datepart, interval, from_date_or_timestamp) -%}
    dateadd({{ datepart }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro -%}

{#- DuckDB: the start plus the interval as a whole number of units (so a column works as the
    amount); a quarter is three months and a week seven days. -#}
{%- macro duckdb__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {%- set unit = datepart | lower -%}
    {%- if unit == 'quarter' -%}
        ({{ from_date_or_timestamp }} + (cast({{ interval }} as bigint) * 3) * interval 1 month)
    {%- elif unit == 'week' -%}
        ({{ from_date_or_timestamp }} + (cast({{ interval }} as bigint) * 7) * interval 1 day)
    {%- else -%}
        ({{ from_date_or_timestamp }} + cast({{ interval }} as bigint) * interval 1 {{ unit }})
    {%- endif -%}
{%- endmacro -%}

{%- macro datediff(first_date, second_date, datepart) -%}
    {{- return(adapter.dispatch('datediff', 'dbt')(first_date, second_date, datepart)) -}}
{%- endmacro -%}

{%- macro default__datediff(first_date, second_date, datepart) -%}
    datediff({{ datepart }}, {{ first_date }}, {{ second_date }})
{%- endmacro -%}

{#- DuckDB: date_diff on both values as timestamps; weeks are whole days divided by seven, with
    a correction by day of week so that the count matches week boundaries crossed. -#}
{%- macro duckdb__datediff(first_date, second_date, datepart) -%}
    {%- if datepart == 'week' -%}
    ({{ datediff(first_date, second_date, 'day') }} // 7 + case
        when date_part('dow', ({{ first_date }})::timestamp) <= date_part('dow', ({{ second_date }})::timestamp) then
            case when {{ first_date }} <= {{ second_date }} then 0 else -1 end
        else
            case when {{ first_date }} <= {{ second_date }} then 1 else 0 end
    end)
    {%- else -%}
    (date_diff('{{ datepart }}', {{ first_date }}::timestamp, {{ second_date }}::timestamp))
    {%- endif -%}
{%- endmacro -%}

{%- macro date_trunc(datepart, date) -%}
    {{- return(adapter.dispatch('date_trunc', 'dbt')(datepart, date)) -}}
{%- endmacro -%}

{%- macro default__date_trunc(datepart, date) -%}
    date_trunc('{{ datepart }}', {{ date }})
{%- endmacro -%}

{%- macro last_day(date, datepart) -%}
    {{- return(adapter.dispatch('last_day', 'dbt')(date, datepart)) -}}
{%- endmacro -%}

{#- The day before the start of the next period, as a date. -#}
{%- macro default_last_day(date, datepart) -%}
    cast({{ dateadd('day', '-1', dateadd(datepart, '1', date_trunc(datepart, date))) }} as date)
{%- endmacro -%}

{%- macro default__last_day(date, datepart) -%}
    {{- default_last_day(date, datepart) -}}
{%- endmacro -%}

{#- DuckDB: a quarter's next start is found by adding three months. -#}
{%- macro duckdb__last_day(date, datepart) -%}
    {%- if datepart == 'quarter' -%}
    cast({{ dateadd('day', '-1', dateadd('month', '3', date_trunc(datepart, date))) }} as date)
    {%- else -%}
    {{- default_last_day(date, datepart) -}}
    {%- endif -%}
{%- endmacro -%}

{%- macro date(year, month, day) -%}
    {{- return(adapter.dispatch('date', 'dbt')(year, month, day)) -}}
{%- endmacro -%}

{%- macro default__date(year, month, day) -%}
    {%- set iso = ('0000' ~ year)[-4:] ~ '-' ~ ('00' ~ month)[-2:] ~ '-' ~ ('00' ~ day)[-2:] -%}
    to_date('{{ iso }}', 'YYYY-MM-DD')
{%- endmacro -%}

{#- DuckDB: make_date from the three parts. -#}
{%- macro duckdb__date(year, month, day) -%}
    make_date({{ year }}, {{ month }}, {{ day }})
{%- endmacro -%}

{%- macro current_timestamp() -%}
    {{- return(adapter.dispatch('current_timestamp', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__current_timestamp() -%}
    {{- exceptions.raise_compiler_error('current_timestamp macro not implemented for adapter ' ~ target.type) -}}
{%- endmacro -%}

{#- DuckDB: now(), a timestamp with time zone. -#}
{%- macro duckdb__current_timestamp() -%}
    now()
{%- endmacro -%}

{%- macro current_timestamp_backcompat() -%}
    {{- return(adapter.dispatch('current_timestamp_backcompat', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__current_timestamp_backcompat() -%}
    current_timestamp::timestamp
{%- endmacro -%}

{%- macro current_timestamp_in_utc_backcompat() -%}
    {{- return(adapter.dispatch('current_timestamp_in_utc_backcompat', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__current_timestamp_in_utc_backcompat() -%}
    {{- return(adapter.dispatch('current_timestamp_backcompat', 'dbt')()) -}}
{%- endmacro -%}

{%- macro snapshot_get_time() -%}
    {{- return(adapter.dispatch('snapshot_get_time', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__snapshot_get_time() -%}
    {{- current_timestamp() -}}
{%- endmacro -%}

{#- DuckDB: the current time without time zone. -#}
{%- macro duckdb__snapshot_get_time() -%}
    {{- current_timestamp() -}}::timestamp
{%- endmacro -%}

{%- macro snapshot_string_as_time(timestamp) -%}
    {{- return(adapter.dispatch('snapshot_string_as_time', 'dbt')(timestamp)) -}}
{%- endmacro -%}

{%- macro default__snapshot_string_as_time(timestamp) -%}
    {{- exceptions.raise_compiler_error('snapshot_string_as_time macro not implemented for adapter ' ~ target.type) -}}
{%- endmacro -%}

{#- DuckDB: the text as a timestamp literal. -#}
{%- macro duckdb__snapshot_string_as_time(timestamp) -%}
    {{- return("'" ~ timestamp ~ "'::timestamp") -}}
{%- endmacro -%}

{%- macro snapshot_hash_arguments(args) -%}
    {{- return(adapter.dispatch('snapshot_hash_arguments', 'dbt')(args)) -}}
{%- endmacro -%}

{%- macro default__snapshot_hash_arguments(args) -%}
    md5(
    {%- for arg in args -%}
        coalesce(cast({{ arg }} as varchar), '')
        {%- if not loop.last %} || '|' || {% endif -%}
    {%- endfor -%}
    )
{%- endmacro -%}

{#- ---------------------------------------------------------------- strings -#}

{%- macro hash(field) -%}
    {{- return(adapter.dispatch('hash', 'dbt')(field)) -}}
{%- endmacro -%}

{%- macro default__hash(field) -%}
    md5(cast({{ field }} as TEXT))
{%- endmacro -%}

{%- macro concat(fields) -%}
    {{- return(adapter.dispatch('concat', 'dbt')(fields)) -}}
{%- endmacro -%}

{%- macro default__concat(fields) -%}
    {{- fields | join(' || ') -}}
{%- endmacro -%}

{%- macro split_part(string_text, delimiter_text, part_number) -%}
    {{- return(adapter.dispatch('split_part', 'dbt')(string_text, delimiter_text, part_number)) -}}
{%- endmacro -%}

{%- macro default__split_part(string_text, delimiter_text, part_number) -%}
    split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }})
{%- endmacro -%}

{#- For dialects whose split_part has no negative part numbers: count the parts from the end. -#}
{%- macro _split_part_negative(string_text, delimiter_text, part_number) -%}
    split_part(
        {{ string_text }},
        {{ delimiter_text }},
        length({{ string_text }}) - length(replace({{ string_text }}, {{ delimiter_text }}, '')) + 2 + {{ part_number }}
    )
{%- endmacro -%}

{#- DuckDB: index the list of parts; a negative part number counts from the end. -#}
{%- macro duckdb__split_part(string_text, delimiter_text, part_number) -%}
    string_split({{ string_text }}, {{ delimiter_text }})[{{ part_number }}]
{%- endmacro -%}

{%- macro listagg(measure, delimiter_text="','", order_by_clause=none, limit_num=none) -%}
    {{- return(adapter.dispatch('listagg', 'dbt')(measure, delimiter_text, order_by_clause, limit_num)) -}}
{%- endmacro -%}

{%- macro default__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- if limit_num -%}
    array_to_string(
        array_slice(
            array_agg({{ measure }})
            {%- if order_by_clause %} within group ({{ order_by_clause }}){% endif %},
            0,
            {{ limit_num }}
        ),
        {{ delimiter_text }}
    )
    {%- else -%}
    listagg({{ measure }}, {{ delimiter_text }})
    {%- if order_by_clause %} within group ({{ order_by_clause }}){% endif -%}
    {%- endif -%}
{%- endmacro -%}

{#- DuckDB: string_agg with the order by inside the call; a limit keeps the first items of the
    ordered array_agg and joins them. -#}
{%- macro duckdb__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- if limit_num -%}
    list_aggr(
        (array_agg({{ measure }}{% if order_by_clause %} {{ order_by_clause }}{% endif %}))[1:{{ limit_num }}],
        'string_agg',
        {{ delimiter_text }}
    )
    {%- else -%}
    string_agg({{ measure }}, {{ delimiter_text }}{% if order_by_clause %} {{ order_by_clause }}{% endif %})
    {%- endif -%}
{%- endmacro -%}

{%- macro escape_single_quotes(expression) -%}
    {{- return(adapter.dispatch('escape_single_quotes', 'dbt')(expression)) -}}
{%- endmacro -%}

{#- Each apostrophe doubled: they're -> they''re -#}
{%- macro default__escape_single_quotes(expression) -%}
    {{- expression | replace("'", "''") -}}
{%- endmacro -%}

{#- The value between single quotes, as given (not escaped). -#}
{%- macro string_literal(value) -%}
    {{- return(adapter.dispatch('string_literal', 'dbt')(value)) -}}
{%- endmacro -%}

{%- macro default__string_literal(value) -%}
    '{{ value }}'
{%- endmacro -%}

{%- macro position(substring_text, string_text) -%}
    {{- return(adapter.dispatch('position', 'dbt')(substring_text, string_text)) -}}
{%- endmacro -%}

{%- macro default__position(substring_text, string_text) -%}
    position({{ substring_text }} in {{ string_text }})
{%- endmacro -%}

{%- macro replace(field, old_chars, new_chars) -%}
    {{- return(adapter.dispatch('replace', 'dbt')(field, old_chars, new_chars)) -}}
{%- endmacro -%}

{%- macro default__replace(field, old_chars, new_chars) -%}
    replace({{ field }}, {{ old_chars }}, {{ new_chars }})
{%- endmacro -%}

{%- macro right(string_text, length_expression) -%}
    {{- return(adapter.dispatch('right', 'dbt')(string_text, length_expression)) -}}
{%- endmacro -%}

{%- macro default__right(string_text, length_expression) -%}
    right({{ string_text }}, {{ length_expression }})
{%- endmacro -%}

{%- macro length(expression) -%}
    {{- return(adapter.dispatch('length', 'dbt')(expression)) -}}
{%- endmacro -%}

{%- macro default__length(expression) -%}
    length({{ expression }})
{%- endmacro -%}

{#- ---------------------------------------------------------------- aggregates and logic -#}

{%- macro any_value(expression) -%}
    {{- return(adapter.dispatch('any_value', 'dbt')(expression)) -}}
{%- endmacro -%}

{%- macro default__any_value(expression) -%}
    any_value({{ expression }})
{%- endmacro -%}

{#- DuckDB: arbitrary(), its name for "any value of the group". -#}
{%- macro duckdb__any_value(expression) -%}
    arbitrary({{ expression }})
{%- endmacro -%}

{%- macro bool_or(expression) -%}
    {{- return(adapter.dispatch('bool_or', 'dbt')(expression)) -}}
{%- endmacro -%}

{%- macro default__bool_or(expression) -%}
    bool_or({{ expression }})
{%- endmacro -%}

{#- Plain `=` unless the project turns on the behaviour flag
    `enable_truthy_nulls_equals_macro` (off by default), which makes two nulls equal. -#}
{%- macro equals(expr1, expr2) -%}
    {{- return(adapter.dispatch('equals', 'dbt')(expr1, expr2)) -}}
{%- endmacro -%}

{%- macro default__equals(expr1, expr2) -%}
    {%- if adapter.behavior is defined and adapter.behavior.enable_truthy_nulls_equals_macro.no_warn -%}
    case when (({{ expr1 }} = {{ expr2 }}) or ({{ expr1 }} is null and {{ expr2 }} is null))
        then 0
        else 1
    end = 0
    {%- else -%}
    ({{ expr1 }} = {{ expr2 }})
    {%- endif -%}
{%- endmacro -%}

{%- macro except() -%}
    {{- return(adapter.dispatch('except', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__except() -%}
    except
{%- endmacro -%}

{%- macro intersect() -%}
    {{- return(adapter.dispatch('intersect', 'dbt')()) -}}
{%- endmacro -%}

{%- macro default__intersect() -%}
    intersect
{%- endmacro -%}

{#- ---------------------------------------------------------------- arrays -#}

{#- All inputs should share one type; an empty array is typed with `data_type`. -#}
{%- macro array_construct(inputs=[], data_type='integer') -%}
    {{- return(adapter.dispatch('array_construct', 'dbt')(inputs, data_type)) -}}
{%- endmacro -%}

{%- macro default__array_construct(inputs, data_type) -%}
    {%- if inputs | length > 0 -%}
    array[{{ inputs | join(', ') }}]
    {%- else -%}
    array[]::{{ data_type }}[]
    {%- endif -%}
{%- endmacro -%}

{%- macro array_append(array, new_element) -%}
    {{- return(adapter.dispatch('array_append', 'dbt')(array, new_element)) -}}
{%- endmacro -%}

{%- macro default__array_append(array, new_element) -%}
    array_append({{ array }}, {{ new_element }})
{%- endmacro -%}

{%- macro array_concat(array_1, array_2) -%}
    {{- return(adapter.dispatch('array_concat', 'dbt')(array_1, array_2)) -}}
{%- endmacro -%}

{%- macro default__array_concat(array_1, array_2) -%}
    array_cat({{ array_1 }}, {{ array_2 }})
{%- endmacro -%}

{#- ---------------------------------------------------------------- series and spines -#}

{#- The smallest n with upper_bound <= 2^n (n >= 1). -#}
{%- macro get_powers_of_two(upper_bound) -%}
    {{- return(adapter.dispatch('get_powers_of_two', 'dbt')(upper_bound)) -}}
{%- endmacro -%}

{%- macro default__get_powers_of_two(upper_bound) -%}
    {%- if upper_bound <= 0 -%}
    {{- exceptions.raise_compiler_error("upper bound must be positive") -}}
    {%- endif -%}
    {%- for n in range(1, 100) -%}
    {%- if upper_bound <= 2 ** n -%}{{- return(n) -}}{%- endif -%}
    {%- endfor -%}
{%- endmacro -%}

{#- A query of one column, generated_number, holding 1 to upper_bound. -#}
{%- macro generate_series(upper_bound) -%}
    {{- return(adapter.dispatch('generate_series', 'dbt')(upper_bound)) -}}
{%- endmacro -%}

{#- Portable form: cross join n copies of {0, 1} and read each combination as a binary number. -#}
{%- macro default__generate_series(upper_bound) -%}
    {%- set n = get_powers_of_two(upper_bound) -%}
    with p as (
        select 0 as generated_number union all select 1
    ), unioned as (
        select
        {%- for i in range(n) %}
            p{{ i }}.generated_number * power(2, {{ i }}){% if not loop.last %} +{% endif %}
        {%- endfor %}
            + 1
            as generated_number
        from
        {%- for i in range(n) %}
            p as p{{ i }}{% if not loop.last %} cross join{% endif %}
        {%- endfor %}
    )
    select *
    from unioned
    where generated_number <= {{ upper_bound }}
    order by generated_number
{%- endmacro -%}

{#- DuckDB: its generate_series table function. -#}
{%- macro duckdb__generate_series(upper_bound) -%}
    select generate_series as generated_number
    from generate_series(1, {{ upper_bound }})
{%- endmacro -%}

{#- How many `datepart`s lie between the two dates, asked of the database; 1 while parsing. -#}
{%- macro get_intervals_between(start_date, end_date, datepart) -%}
    {{- return(adapter.dispatch('get_intervals_between', 'dbt')(start_date, end_date, datepart)) -}}
{%- endmacro -%}

{%- macro default__get_intervals_between(start_date, end_date, datepart) -%}
    {%- set result = run_query('select ' ~ datediff(start_date, end_date, datepart)) -%}
    {%- if result and result.rows | length > 0 -%}
    {{- return(result.rows[0][0]) -}}
    {%- else -%}
    {{- return(1) -}}
    {%- endif -%}
{%- endmacro -%}

{#- One row per datepart from start_date (included) to end_date (excluded), in a column named
    date_<datepart>. -#}
{%- macro date_spine(datepart, start_date, end_date) -%}
    {{- return(adapter.dispatch('date_spine', 'dbt')(datepart, start_date, end_date)) -}}
{%- endmacro -%}

{%- macro default__date_spine(datepart, start_date, end_date) -%}
    with rawdata as (
        {{ generate_series(get_intervals_between(start_date, end_date, datepart)) }}
    ),
    all_periods as (
        select (
            {{ dateadd(datepart, "row_number() over (order by 1) - 1", start_date) }}
        ) as date_{{ datepart }}
        from rawdata
    ),
    filtered as (
        select *
        from all_periods
        where date_{{ datepart }} <= {{ end_date }}
    )
    select * from filtered
{%- endmacro -%}

{#- ------------------------------------------------ naming (callable from templates) -#}
{#-
  The schema, alias and database a node gets. xform names nodes natively (and calls a project's
  own `generate_schema_name` when it has one); these are what a template gets when it calls
  them itself, as dbt-codegen's tests do. A project's macro of the same name wins.
-#}

{%- macro generate_schema_name(custom_schema_name=none, node=none) -%}
    {{- return(adapter.dispatch('generate_schema_name', 'dbt')(custom_schema_name, node)) -}}
{%- endmacro -%}

{%- macro default__generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{- target.schema -}}
    {%- else -%}
        {{- target.schema }}_{{ custom_schema_name | trim -}}
    {%- endif -%}
{%- endmacro -%}

{#- The variant a project opts into: the custom schema alone on a `prod` target. -#}
{%- macro generate_schema_name_for_env(custom_schema_name, node) -%}
    {%- if target.name == 'prod' and custom_schema_name is not none -%}
        {{- custom_schema_name | trim -}}
    {%- else -%}
        {{- target.schema -}}
    {%- endif -%}
{%- endmacro -%}

{%- macro generate_alias_name(custom_alias_name=none, node=none) -%}
    {{- return(adapter.dispatch('generate_alias_name', 'dbt')(custom_alias_name, node)) -}}
{%- endmacro -%}

{%- macro default__generate_alias_name(custom_alias_name, node) -%}
    {%- if custom_alias_name -%}
        {{- custom_alias_name | trim -}}
    {%- elif node.version -%}
        {{- node.name ~ "_v" ~ (node.version | replace(".", "_")) -}}
    {%- else -%}
        {{- node.name -}}
    {%- endif -%}
{%- endmacro -%}

{%- macro generate_database_name(custom_database_name=none, node=none) -%}
    {{- return(adapter.dispatch('generate_database_name', 'dbt')(custom_database_name, node)) -}}
{%- endmacro -%}

{%- macro default__generate_database_name(custom_database_name, node) -%}
    {%- if custom_database_name is none -%}
        {{- target.database -}}
    {%- else -%}
        {{- custom_database_name | trim -}}
    {%- endif -%}
{%- endmacro -%}
