-- Sample data: {customers} customers and their subscriptions, invoices, events and page views.
SET synchronous_commit = off;

INSERT INTO customers (email, name, country, created_at, updated_at)
SELECT 'user' || i || '@example.com', 'Customer ' || i, (ARRAY['DE', 'FR', 'NL', 'US', 'GB'])[1 + i % 5],
       timestamptz '2020-01-01 00:00+00' + i * interval '7 minutes', timestamptz '2020-01-01 00:00+00' + i * interval '9 minutes'
FROM generate_series(1, {customers}) AS i;

INSERT INTO subscriptions (customer_id, plan, amount, currency, status, started_at, canceled_at)
SELECT 1 + i % {customers}, (ARRAY['starter', 'team', 'business'])[1 + i % 3], round((9 + (i % 300) * 1.37)::numeric, 2),
       (ARRAY['EUR', 'USD'])[1 + i % 2], CASE WHEN i % 11 = 0 THEN 'canceled' ELSE 'active' END,
       timestamptz '2021-01-01 00:00+00' + i * interval '5 minutes',
       CASE WHEN i % 11 = 0 THEN timestamptz '2024-01-01 00:00+00' + i * interval '1 minute' END
FROM generate_series(1, {subscriptions}) AS i;

INSERT INTO invoices (subscription_id, amount, tax, issued_at, paid)
SELECT 1 + i % {subscriptions}, round((9 + (i % 300) * 1.37)::numeric, 2), round((i % 300) * 0.2603::numeric, 4),
       timestamptz '2022-01-01 00:00+00' + i * interval '2 minutes', i % 7 <> 0
FROM generate_series(1, {invoices}) AS i;

INSERT INTO events (customer_id, kind, payload, occurred_at)
SELECT 1 + i % {customers}, (ARRAY['login', 'invoice.paid', 'plan.changed', 'export'])[1 + i % 4],
       jsonb_build_object('ip', '10.0.' || (i % 250) || '.' || (i % 200), 'ua', 'Mozilla/5.0', 'n', i,
                          'tags', jsonb_build_array('a' || i % 10, 'b' || i % 7)),
       timestamptz '2023-01-01 00:00+00' + i * interval '1 minute'
FROM generate_series(1, {events}) AS i;

INSERT INTO page_views (customer_id, path, viewed_at)
SELECT CASE WHEN i % 13 = 0 THEN NULL ELSE 1 + i % {customers} END, '/app/page/' || (i % 500),
       timestamptz '2024-01-01 00:00+00' + i * interval '30 seconds'
FROM generate_series(1, {page_views}) AS i;

INSERT INTO usage_records (customer_id, recorded_at, units)
SELECT 1 + i % {customers}, timestamptz '2025-06-01 00:00+00' + (i % 3) * interval '10 months' + i * interval '1 second',
       1 + i % 50
FROM generate_series(1, {usage_records}) AS i;

INSERT INTO documents (customer_id, filename, content)
SELECT 1 + i % {customers}, 'Invoice-' || i || '.PDF', lo_from_bytea(0, convert_to(repeat('%PDF-1.4 document ' || i || E'\n', 40), 'UTF8'))
FROM generate_series(1, {documents}) AS i;

REFRESH MATERIALIZED VIEW customer_revenue;
