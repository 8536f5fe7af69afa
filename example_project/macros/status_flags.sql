{#-
    Emits one boolean column per status, e.g. for statuses ['placed', 'returned']:
        status = 'placed' as is_placed,
        status = 'returned' as is_returned
    The columns are comma separated, without a trailing comma.
-#}
{% macro status_flags(column_name, statuses, prefix='is_') %}
    {%- for status in statuses %}
    {{ column_name }} = '{{ status }}' as {{ prefix }}{{ status }}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
