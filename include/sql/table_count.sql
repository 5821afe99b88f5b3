-- Exact rows of a table.
SELECT count(*) AS rows FROM {table}
