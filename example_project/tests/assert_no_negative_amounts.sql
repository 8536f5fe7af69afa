-- Singular test: every row it returns is a failure.
select order_id, amount
from {{ ref('orders') }}
where amount < 0
