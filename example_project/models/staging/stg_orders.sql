with source as (

    select * from {{ ref('raw_orders') }}
    where order_date >= '{{ var("min_order_date") }}'

)

select
    id as order_id,
    customer_id,
    cast(order_date as date) as order_date,
    status,
    {{ status_flags('status', ['placed', 'shipped', 'completed', 'returned']) }}
from source
