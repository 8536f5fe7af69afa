-- The `raw` source points at the seed table, but a source() call creates no
-- dependency on the seed, so declare it explicitly to build after it:
-- depends_on: {{ ref('raw_customers') }}

with source as (

    select * from {{ source('raw', 'raw_customers') }}

),

renamed as (

    select
        id as customer_id,
        first_name,
        last_name,
        first_name || ' ' || last_name as full_name,
        lower(email) as email,
        cast(signup_date as date) as signup_date
    from source

)

select * from renamed
