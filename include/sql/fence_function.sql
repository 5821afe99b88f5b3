-- The write fence: a statement trigger that refuses INSERT, UPDATE, DELETE and TRUNCATE by the
-- application roles (its arguments), whatever their transaction mode. session_user is checked
-- too, so SET ROLE does not get around it. SQLSTATE 25006 = read_only_sql_transaction.
CREATE SCHEMA IF NOT EXISTS ferry;
CREATE OR REPLACE FUNCTION ferry.refuse_write() RETURNS trigger LANGUAGE plpgsql AS $fence$
BEGIN
    IF session_user::text = ANY (TG_ARGV) OR current_user::text = ANY (TG_ARGV) THEN
        RAISE EXCEPTION 'ferry: writes to %.% are fenced for the migration', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = '25006', HINT = 'The database is moving; this write is refused, not lost. Retry against the new database.';
    END IF;
    RETURN NULL;
END
$fence$;
