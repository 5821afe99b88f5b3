-- Every version of every extension this server can install.
SELECT name, version FROM pg_available_extension_versions ORDER BY 1, 2
