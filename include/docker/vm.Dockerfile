# The old side's "VM" for docker-compose.yaml: an sshd whose units (saas-web: the old app; saas-worker:
# the write load) are driven by `ferry-unit start|stop|status UNIT`, as on the local stand, and the old app's
# PgBouncer in front of source-db (port 6432; D-day's switch at the pooler repoints it).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openssh-server pgbouncer \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /run/sshd /var/lib/ferry
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir $(grep -iE '^(uvicorn|starlette|psycopg|psycopg-binary|httpx|boto3|pyyaml)==' /tmp/requirements.txt)
COPY include/docker/vm-entrypoint.sh /usr/local/bin/vm-entrypoint.sh
ENTRYPOINT ["/bin/sh", "/usr/local/bin/vm-entrypoint.sh"]
