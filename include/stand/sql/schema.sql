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

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO saas_app;
GRANT TRUNCATE ON page_views TO saas_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO saas_app;
-- The reporting tool reads everything and records its exports as events (a writer the plan does not list).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO saas_reporting;
GRANT INSERT ON events TO saas_reporting;
GRANT USAGE ON SEQUENCE events_id_seq TO saas_reporting;
