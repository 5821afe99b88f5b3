# Ferry's Airflow image for docker-compose.yaml: the official Airflow 3.3.2 image with Ferry's pinned
# requirements (the same set CI installs). dags/, plugins/ and include/ are mounted, not copied.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client curl \
    && rm -rf /var/lib/apt/lists/*
USER airflow
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
