-- Rows of a table, for chunking: the planner's estimate, or an exact count when it has none
-- (reltuples is -1 until the table is first vacuumed or analyzed).
SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint
            ELSE (SELECT count(*) FROM {table}) END AS estimated_rows
FROM pg_class c
WHERE c.oid = %(table)s::regclass
