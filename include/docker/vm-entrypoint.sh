#!/bin/sh
# The old side's "VM" in docker-compose.yaml. Keys on first start, shared with the Airflow
# containers through the vm-keys volume: the client key Airflow logs in with, and known_hosts with
# this VM's host key (Ferry always verifies host keys). Its units, driven by
# `ferry-unit start|stop|status UNIT` as systemctl would be: saas-web (the old app on port 8000)
# and saas-worker (the write load on source-db, when FERRY_LOAD_DSN is set).
set -e
[ -f /keys/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -C ferry-compose-client -f /keys/id_ed25519
[ -f /etc/ssh/ferry_host_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ferry_host_key
chmod 644 /keys/id_ed25519
mkdir -p /root/.ssh /run/ferry && cp /keys/id_ed25519.pub /root/.ssh/authorized_keys
echo "old-vm $(cut -d' ' -f1,2 /etc/ssh/ferry_host_key.pub)" > /keys/known_hosts
cat > /usr/local/bin/ferry-unit <<'UNIT'
#!/bin/sh
# ferry-unit start|stop|status saas-web|saas-worker; exit codes as systemctl's (3: inactive)
export PYTHONPATH=/opt/ferry/include
pidfile=/run/ferry/$2.pid
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case "$2" in
  saas-web) cmd="python -m uvicorn stand.apps:app --host 0.0.0.0 --port 8000 --no-access-log" ;;
  saas-worker) cmd="python -m stand.load --dsn $FERRY_LOAD_DSN --stats /var/lib/ferry/load-stats.json" ;;
  *) echo "unknown unit $2" >&2; exit 5 ;;
esac
case "$1" in
  status) if running; then echo active; else echo inactive; exit 3; fi ;;
  start) running || { setsid $cmd >> "/var/lib/ferry/$2.log" 2>&1 & echo $! > "$pidfile"; sleep 1; running; } ;;
  stop) if running; then kill "$(cat "$pidfile")"; while running; do sleep 0.2; done; fi; rm -f "$pidfile" ;;
  *) echo "usage: ferry-unit start|stop|status UNIT" >&2; exit 2 ;;
esac
UNIT
chmod 755 /usr/local/bin/ferry-unit
# The old app's PgBouncer: its file is where the stand plan's source.pooler.config_path says
# ($FERRY_STAND_DIR/pgbouncer/pgbouncer.ini); the write load goes through it.
export FERRY_STAND_DIR=/var/lib/ferry
mkdir -p "$FERRY_STAND_DIR/pgbouncer"
[ -f "$FERRY_STAND_DIR/pgbouncer/pgbouncer.ini" ] || cat > "$FERRY_STAND_DIR/pgbouncer/pgbouncer.ini" <<INI
[databases]
saas = host=source-db port=5432 dbname=saas

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $FERRY_STAND_DIR/pgbouncer/userlist.txt
admin_users = ferry_pooler
pool_mode = transaction
ignore_startup_parameters = extra_float_digits
INI
printf '"saas_app" "saas-app"\n"ferry_pooler" "ferry-pooler"\n' > "$FERRY_STAND_DIR/pgbouncer/userlist.txt"
chown -R postgres "$FERRY_STAND_DIR/pgbouncer"
pgbouncer -d -u postgres "$FERRY_STAND_DIR/pgbouncer/pgbouncer.ini"
env | grep -E '^(FERRY_|PYTHONPATH)' | sed 's/^/export /' > /etc/profile.d/ferry.sh
ferry-unit start saas-web
[ -z "$FERRY_LOAD_DSN" ] || ferry-unit start saas-worker
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ferry_host_key -o PasswordAuthentication=no \
    -o "SetEnv=FERRY_APP_NAME=$FERRY_APP_NAME FERRY_APP_FILE=$FERRY_APP_FILE FERRY_LOAD_DSN=$FERRY_LOAD_DSN FERRY_STAND_DIR=$FERRY_STAND_DIR"
