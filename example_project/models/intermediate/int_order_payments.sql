{{ config(materialized='ephemeral') }}

with payments as (

    select * from {{ ref('stg_payments') }}

)

select
    order_id,
    {% for method in var('payment_methods') -%}
    sum(case when payment_method = '{{ method }}' then amount else 0 end) as {{ method }}_amount,
    {% endfor -%}
    sum(amount) as total_amount
from payments
group by order_id
