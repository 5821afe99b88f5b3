-- Which of the given (quoted, schema-qualified) table names exist, in the order given.
SELECT t AS "table"
FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS u(t, n)
WHERE to_regclass(t) IS NOT NULL
ORDER BY n
