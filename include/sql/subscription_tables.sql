-- Per-table state of a subscription: i = initialize, d = copying, f = finished copy, s = synchronized, r = ready.
SELECT n.nspname AS schema, c.relname AS "table", r.srsubstate AS state,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
FROM pg_subscription s
JOIN pg_subscription_rel r ON r.srsubid = s.oid
JOIN pg_class c ON c.oid = r.srrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.subname = %(subscription)s
ORDER BY 1, 2
