-- Of the given extensions, those this server can install, and whether their default version is trusted (a login
-- that is not a superuser may create a trusted extension with CREATE on the database).
SELECT v.name, bool_or(v.trusted) AS trusted
FROM pg_available_extension_versions v
JOIN pg_available_extensions a ON a.name = v.name AND a.default_version = v.version
WHERE v.name = ANY(%(names)s)
GROUP BY v.name
