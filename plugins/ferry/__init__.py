"""Ferry: move a live Postgres-backed application from VMs to AWS with Airflow."""
