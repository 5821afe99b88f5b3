"""A throwaway sshd on a loopback port: the stand's "VM". Its units are stand processes (the old
app, the write load) that ``ferry-unit start|stop|status UNIT`` drives, as systemctl would.

It has its own host key and accepts one client key; never the system's sshd or its keys.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stand.core import ROOT, Stand, conn_json, venv_bin, wait_for_port

PORT_OFFSET = 10
CONN_ID = "vm_stand"


class Sshd:
    name = "sshd"

    def folder(self, stand: Stand) -> Path:
        return stand.dir / "ssh"

    def up(self, stand: Stand) -> None:
        if self.healthy(stand):
            return
        ssh = self.folder(stand)
        ssh.mkdir(mode=0o700, exist_ok=True)
        for key in ("host_key", "client_key"):
            if not (ssh / key).exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ferry-stand-{key}", "-f", str(ssh / key)],
                    check=True,
                )
        (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
        (ssh / "authorized_keys").chmod(0o600)
        bin_dir = stand.dir / "bin"
        bin_dir.mkdir(exist_ok=True)
        unit = bin_dir / "ferry-unit"
        unit.write_text(f'#!/bin/sh\nexec {venv_bin("python")} -m stand unit "$@"\n')
        unit.chmod(0o755)
        env = {
            "FERRY_STAND_DIR": str(stand.dir),
            "FERRY_STAND_PORT_BASE": str(stand.port_base),
            "PYTHONPATH": str(ROOT / "include"),
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        }
        (ssh / "sshd_config").write_text(
            f"Port {stand.port(PORT_OFFSET)}\nListenAddress 127.0.0.1\nHostKey {ssh / 'host_key'}\n"
            f"PidFile {ssh / 'sshd.pid'}\nAuthorizedKeysFile {ssh / 'authorized_keys'}\nUsePAM no\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            f"SetEnv {' '.join(f'{k}={v}' for k, v in env.items())}\n"
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        stand.start_process(self.name, ["/usr/sbin/sshd", "-D", "-e", "-f", str(ssh / "sshd_config")])
        wait_for_port(stand.port(PORT_OFFSET), what="sshd")

    def healthy(self, stand: Stand) -> bool:
        return stand.process_alive(self.name)

    def env(self, stand: Stand) -> dict[str, str]:
        ssh = self.folder(stand)
        return {
            f"AIRFLOW_CONN_{CONN_ID.upper()}": conn_json(
                conn_type="ssh",
                host="127.0.0.1",
                port=stand.port(PORT_OFFSET),
                login="root",
                extra={
                    "private_key": (ssh / "client_key").read_text(),
                    "host_key": " ".join((ssh / "host_key.pub").read_text().split()[:2]),
                },
            )
        }

    def down(self, stand: Stand) -> None:
        stand.stop_process(self.name)
