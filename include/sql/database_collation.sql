SELECT datcollate AS collation FROM pg_database WHERE datname = current_database()
