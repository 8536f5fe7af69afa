with orders as (

    select * from {{ ref('stg_orders') }}

),

order_payments as (

    select * from {{ ref('int_order_payments') }}

)

select
    orders.order_id,
    orders.customer_id,
    orders.order_date,
    orders.status,
    {% for method in var('payment_methods') -%}
    coalesce(order_payments.{{ method }}_amount, 0) as {{ method }}_amount,
    {% endfor -%}
    coalesce(order_payments.total_amount, 0) as amount,
    '{{ env_var("XFORM_SHOP_CURRENCY", "EUR") }}' as currency
from orders
left join order_payments
    on orders.order_id = order_payments.order_id
