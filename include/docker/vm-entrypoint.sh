#!/bin/sh
# Keys on first start, shared with the Airflow containers through the vm-keys volume: the client key
# Airflow logs in with, and known_hosts with this VM's host key (Ferry always verifies host keys).
set -e
[ -f /keys/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -C ferry-compose-client -f /keys/id_ed25519
[ -f /etc/ssh/ferry_host_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ferry_host_key
chmod 644 /keys/id_ed25519
mkdir -p /root/.ssh && cp /keys/id_ed25519.pub /root/.ssh/authorized_keys
echo "old-vm $(cut -d' ' -f1,2 /etc/ssh/ferry_host_key.pub)" > /keys/known_hosts
printf '#!/bin/sh\nexec python -m stand unit "$@"\n' > /usr/local/bin/ferry-unit && chmod 755 /usr/local/bin/ferry-unit
export PYTHONPATH=/opt/ferry/include FERRY_STAND_DIR=/var/lib/ferry
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ferry_host_key -o PasswordAuthentication=no \
    -o "SetEnv=PYTHONPATH=$PYTHONPATH FERRY_STAND_DIR=$FERRY_STAND_DIR FERRY_APP_NAME=old_app"
