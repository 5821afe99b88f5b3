-- The stand's sample SaaS schema: what a Rails billing application keeps in PostgreSQL.
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    plan text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL DEFAULT 'EUR',
    status text NOT NULL,
    started_at timestamptz NOT NULL,
    canceled_at timestamptz
);
CREATE INDEX ON subscriptions (customer_id);

-- Owned by no column: the application numbers invoices from it. Sequences are not replicated.
CREATE SEQUENCE invoice_number_seq START 100000;

CREATE TABLE invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES subscriptions (id),
    number text NOT NULL UNIQUE DEFAULT 'INV-' || nextval('invoice_number_seq'),
    amount numeric(12, 2) NOT NULL,
    tax numeric(12, 4) NOT NULL,
    issued_at timestamptz NOT NULL,
    paid boolean NOT NULL DEFAULT false
);
CREATE INDEX ON invoices (subscription_id);

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    kind text NOT NULL,
    payload jsonb NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON events (customer_id);

-- No primary key: an append-only log. REPLICA IDENTITY FULL lets logical replication carry it.
CREATE TABLE page_views (
    customer_id bigint,
    path text NOT NULL,
    viewed_at timestamptz NOT NULL
);
ALTER TABLE page_views REPLICA IDENTITY FULL;

-- Metered usage, partitioned by year: logical replication publishes it through its root, so the
-- target may partition it otherwise.
CREATE TABLE usage_records (
    customer_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    units integer NOT NULL,
    PRIMARY KEY (customer_id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE TABLE usage_records_2025 PARTITION OF usage_records FOR VALUES FROM ('2025-01-01 00:00+00') TO ('2026-01-01 00:00+00');
CREATE TABLE usage_records_2026 PARTITION OF usage_records FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2027-01-01 00:00+00');
CREATE TABLE usage_records_later PARTITION OF usage_records DEFAULT;

-- Uploaded documents: contents kept as large objects (which logical replication does not carry),
-- file names case-insensitive (citext, a type from an extension).
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE documents (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    filename citext NOT NULL,
    content oid NOT NULL
);

-- What the billing dashboard reads: a materialized view (replication carries its tables, not its rows).
CREATE MATERIALIZED VIEW customer_revenue AS
    SELECT customer_id, count(*) AS subscriptions, sum(amount) AS monthly
    FROM subscriptions WHERE status = 'active' GROUP BY customer_id;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO saas_app;
GRANT TRUNCATE ON page_views TO saas_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO saas_app;
-- The reporting tool reads everything and records its exports as events (a writer the plan does not list).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO saas_reporting;
GRANT INSERT ON events TO saas_reporting;
GRANT USAGE ON SEQUENCE events_id_seq TO saas_reporting;
