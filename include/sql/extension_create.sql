-- An extension the source uses, created on the target before the schema dump is applied (a dump of
-- named schemas leaves extensions out). Rendered into the DDL, not run on its own.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema};
