-- Connectivity: who we are and what we talk to.
SELECT current_user AS "user", current_database() AS database, current_setting('server_version') AS version
