{#- Converts an integer amount of cents into a decimal currency amount. -#}
{% macro cents_to_dollars(column_name, scale=2) %}round({{ column_name }} / 100.0, {{ scale }}){% endmacro %}
