-- The write fence: a statement trigger that refuses INSERT, UPDATE, DELETE and TRUNCATE by every
-- session whose login role is not one of its arguments (Ferry's own role and the roles the plan keeps
-- writing), whatever its transaction mode. session_user is what is checked: SET ROLE and SECURITY
-- DEFINER functions do not get around it. Logical replication's apply workers fire no ordinary
-- trigger. SQLSTATE 25006 = read_only_sql_transaction.
CREATE SCHEMA IF NOT EXISTS ferry;
CREATE OR REPLACE FUNCTION ferry.refuse_write() RETURNS trigger LANGUAGE plpgsql AS $fence$
BEGIN
    IF NOT (session_user::text = ANY (TG_ARGV)) THEN
        RAISE EXCEPTION 'ferry: writes to %.% are fenced for the migration', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = '25006', HINT = 'The database is moving; this write is refused, not lost. Retry against the new database.';
    END IF;
    RETURN NULL;
END
$fence$;
