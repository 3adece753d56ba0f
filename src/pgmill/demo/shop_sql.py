"""The demo shop's SQL: the models it builds (models/marts/*.sql) and the queries it declares for tuning
(queries/*.sql), written into the demo project as files a user can read and edit."""

from __future__ import annotations

MODELS: dict[str, str] = {
    "daily_revenue.sql": """\
-- Orders and revenue per day (fulfilled and open orders; pending ones are not revenue yet).
-- pgmill: {materialized: table, indexes: [day]}
SELECT ordered_at AS day, count(*) AS orders, sum(total) AS revenue, sum(discount) AS discounts
FROM shop.orders
WHERE status IN ('F', 'O')
GROUP BY ordered_at
""",
    "customer_revenue.sql": """\
-- One row per customer who ordered: orders, revenue, first and last order.
-- pgmill: {materialized: table, indexes: [customer_id]}
SELECT c.customer_id, c.country, c.segment, count(o.order_id) AS orders, sum(o.total) AS revenue,
       min(o.ordered_at) AS first_order, max(o.ordered_at) AS last_order
FROM shop.customers c
JOIN shop.orders o ON o.customer_id = c.customer_id
GROUP BY c.customer_id, c.country, c.segment
""",
    "product_sales.sql": """\
-- Units and revenue per product, from the order lines.
SELECT p.product_id, p.sku, p.name, p.category, sum(i.quantity) AS units,
       sum(i.quantity * i.unit_price) AS revenue
FROM shop.order_items i
JOIN shop.products p ON p.product_id = i.product_id
GROUP BY p.product_id, p.sku, p.name, p.category
""",
    "category_sales.sql": """\
-- Revenue per category: built on the model marts.product_sales, so it waits for it.
SELECT category, count(*) AS products, sum(units) AS units, sum(revenue) AS revenue
FROM marts.product_sales
GROUP BY category
""",
}

# The shop application's queries, each with parameters drawn from the data (params_sql) so `pgmill tune`
# measures them as the application runs them; the same set as tests/golden/tune/shop_queries/.
QUERIES: dict[str, str] = {
    "01_customer_by_id.sql": """\
-- name: customer_by_id
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 97 = 0 ORDER BY customer_id LIMIT 40
SELECT * FROM shop.customers WHERE customer_id = $1
""",
    "02_customer_by_email.sql": """\
-- name: customer_by_email
-- params_sql: SELECT email FROM shop.customers WHERE customer_id % 97 = 1 ORDER BY customer_id LIMIT 40
SELECT customer_id, full_name, segment FROM shop.customers WHERE email = $1
""",
    "03_orders_of_customer.sql": """\
-- name: orders_of_customer
-- target_ms: 50
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 89 = 3 ORDER BY customer_id LIMIT 40
SELECT order_id, status, total, ordered_at
FROM shop.orders WHERE customer_id = $1 ORDER BY ordered_at DESC LIMIT 20
""",
    "04_order_lines.sql": """\
-- name: order_lines
-- params_sql: SELECT order_id FROM shop.orders WHERE order_id % 101 = 5 ORDER BY order_id LIMIT 40
SELECT line_no, name, quantity, unit_price
FROM shop.order_items JOIN shop.products USING (product_id)
WHERE order_id = $1 ORDER BY line_no
""",
    "05_product_sales.sql": """\
-- name: product_sales
-- params_sql: SELECT product_id FROM shop.products WHERE product_id % 13 = 2 ORDER BY product_id LIMIT 40
SELECT count(*) AS lines, sum(quantity) AS units FROM shop.order_items WHERE product_id = $1
""",
    "06_revenue_week.sql": """\
-- name: revenue_week
-- params_sql: SELECT d::date, d::date + 7 FROM generate_series(date '2024-01-01', date '2024-12-01', interval '9 days') g(d) ORDER BY d
SELECT count(*) AS orders, sum(total) AS revenue FROM shop.orders WHERE ordered_at >= $1 AND ordered_at < $2
""",
    "07_pending_orders.sql": """\
-- name: pending_orders
-- recent pending orders for the warehouse screen: a constant predicate, a top-N
SELECT order_id, customer_id, total, ordered_at
FROM shop.orders WHERE status = 'P' ORDER BY ordered_at DESC LIMIT 50
""",
    "08_customer_orders_by_email.sql": """\
-- name: customer_orders_by_email
-- unqualified column names across two tables: each must be resolved to its own table
-- params_sql: SELECT email FROM shop.customers WHERE customer_id % 83 = 7 ORDER BY customer_id LIMIT 40
SELECT full_name, order_id, total, ordered_at
FROM shop.customers JOIN shop.orders USING (customer_id)
WHERE email = $1 AND status <> 'F'
""",
    "09_user_recent_events.sql": """\
-- name: user_recent_events
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 79 = 11 ORDER BY customer_id LIMIT 40
SELECT event_type, occurred_at FROM shop.events WHERE user_id = $1 ORDER BY occurred_at DESC LIMIT 50
""",
    "10_events_last_hour.sql": """\
-- name: events_last_hour
-- a recent-window aggregate
-- params_sql: SELECT t FROM generate_series(timestamptz '2024-06-01', timestamptz '2024-12-01', interval '5 days') g(t) ORDER BY t
SELECT event_type, count(*) FROM shop.events
WHERE occurred_at >= $1 AND occurred_at < $1::timestamptz + interval '6 hours'
GROUP BY event_type ORDER BY 2 DESC
""",
    "11_customer_orders_since.sql": """\
-- name: customer_orders_since
-- composite: an equality and a range
-- params_sql: SELECT customer_id, date '2024-01-01' FROM shop.customers WHERE customer_id % 61 = 4 ORDER BY customer_id LIMIT 40
SELECT order_id, total FROM shop.orders WHERE customer_id = $1 AND ordered_at >= $2
""",
    "12_session_events.sql": """\
-- name: session_events
-- params_sql: SELECT session_id FROM shop.events WHERE event_id % 1499 = 3 AND session_id IS NOT NULL ORDER BY event_id LIMIT 40
SELECT event_id, event_type, occurred_at FROM shop.events WHERE session_id = $1
""",
    "13_customer_spend.sql": """\
-- name: customer_spend
-- a foreign-key join: a customer's orders and their lines
-- params_sql: SELECT customer_id FROM shop.customers WHERE customer_id % 71 = 9 ORDER BY customer_id LIMIT 40
SELECT o.order_id, sum(i.quantity * i.unit_price) AS value
FROM shop.orders o JOIN shop.order_items i ON i.order_id = o.order_id
WHERE o.customer_id = $1 GROUP BY o.order_id
""",
    "14_daily_revenue_recent.sql": """\
-- name: daily_revenue_recent
-- params_sql: SELECT d::date FROM generate_series(date '2024-11-01', date '2024-12-20', interval '2 days') g(d) ORDER BY d
SELECT ordered_at, count(*), sum(total) FROM shop.orders WHERE ordered_at >= $1 GROUP BY ordered_at ORDER BY ordered_at
""",
}
