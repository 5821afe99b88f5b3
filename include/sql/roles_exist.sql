-- Which of the given role names exist.
SELECT rolname AS role FROM pg_roles WHERE rolname = ANY(%(roles)s)
