-- Constraints of the tables of the given schemas (primary keys, unique, check, foreign keys, exclusion) with their
-- definitions, for schema drift. NOT NULL is compared with the columns.
SELECT n.nspname AS schema,
       c.relname AS "table",
       k.conname AS "constraint",
       quote_ident(k.conname) AS quoted,
       k.contype AS kind,
       pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname = ANY(%(schemas)s)
  AND k.contype IN ('p', 'u', 'c', 'f', 'x')
ORDER BY 1, 2, 3
