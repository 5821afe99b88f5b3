"""The old side's virtual machines over SSH (the provider's SSHHook), host keys always verified."""

from __future__ import annotations

import shlex
from typing import Any

from airflow.providers.ssh.hooks.ssh import SSHHook


class VmHook(SSHHook):
    """Run commands on one VM. The host key must match the connection's ``host_key``: an unknown or
    changed key is refused, never accepted, whatever the connection's extras say.

    :param ssh_conn_id: the VM's SSH connection (with a ``host_key`` extra).
    """

    def __init__(self, ssh_conn_id: str, **kwargs: Any) -> None:
        super().__init__(ssh_conn_id=ssh_conn_id, no_host_key_check=False, **kwargs)

    def run(self, command: str, timeout: int = 120) -> tuple[int, str, str]:
        """Exit status, stdout and stderr of ``command``, stripped."""
        status, out, err = self.run_raw(command, timeout=timeout)
        return status, out.strip(), err.strip()

    def run_raw(
        self, command: str, stdin: str | None = None, timeout: int = 120, client: Any = None
    ) -> tuple[int, str, str]:
        """Exit status, stdout and stderr of ``command``, stdout as it came (a file's text); ``stdin`` is sent to
        the command (never put on its command line: it may hold a secret). ``client``: an open connection
        (``get_conn()``) to run it on, so several commands share one SSH handshake."""
        if client is None:
            with self.get_conn() as client:
                return self.run_raw(command, stdin, timeout, client)
        channel_in, stdout, stderr = client.exec_command(command, timeout=timeout)
        if stdin is not None:
            channel_in.write(stdin.encode())
            channel_in.flush()
        channel_in.channel.shutdown_write()
        out, err = stdout.read(), stderr.read()
        return stdout.channel.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")

    def unit_active(self, status_command: str, unit: str) -> bool:
        """Whether ``unit`` runs, by its status command's exit status."""
        return self.run(status_command.format(unit=shlex.quote(unit)))[0] == 0
