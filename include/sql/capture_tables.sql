-- The tables of the given schemas, and every partition of them wherever it lives, as the change capture
-- stream names them (a partition by its own name, in its own schema), each with the table compared (its root) and that table's key columns (primary key, else
-- replica identity index) or, without a key, all its columns; quoted as quote_ident quotes them.
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
       quote_ident(rn.nspname) || '.' || quote_ident(r.relname) AS root,
       (SELECT array_agg(quote_ident(a.attname) ORDER BY k.ord)
        FROM (SELECT i.indrelid, i.indkey
              FROM pg_index i
              WHERE i.indrelid = r.oid AND i.indisvalid AND (i.indisprimary OR i.indisreplident)
              ORDER BY i.indisprimary DESC
              LIMIT 1) AS i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS key_columns,
       (SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum)
        FROM pg_attribute a
        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relkind IN ('r', 'p') AND (n.nspname = ANY(%(schemas)s) OR rn.nspname = ANY(%(schemas)s))
