-- The columns identifying a row of a table: its primary key, else its replica identity index.
SELECT array_agg(quote_ident(a.attname) ORDER BY k.ord) AS key_columns,
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS key_types
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(table)s::regclass
  AND i.indisvalid
  AND (i.indisprimary OR i.indisreplident)
GROUP BY i.indexrelid, i.indisprimary
ORDER BY i.indisprimary DESC
LIMIT 1
