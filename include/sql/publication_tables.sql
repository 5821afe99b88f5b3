-- The tables a publication publishes; no row when the publication does not exist.
SELECT p.pubname AS publication, p.puballtables AS all_tables, p.pubviaroot AS via_root,
       coalesce(array_agg(quote_ident(t.schemaname) || '.' || quote_ident(t.tablename) ORDER BY 1)
                FILTER (WHERE t.tablename IS NOT NULL), '{}') AS tables
FROM pg_publication p
LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname
WHERE p.pubname = %(publication)s
GROUP BY p.pubname, p.puballtables, p.pubviaroot
