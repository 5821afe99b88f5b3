"""The stand's certificate authority and the server certificate its PostgreSQL servers present.

Managed PostgreSQL services accept SSL only and hand out their CA (DigitalOcean's ``ca-certificate.crt``,
RDS's ``global-bundle.pem``); clients verify the server against it (``sslmode=verify-full``). The stand
does the same with a CA of its own, made once per stand: ``ca.crt`` is what the Airflow connections name
in ``sslrootcert``; the servers' key is readable by the postgres user only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stand.core import Stand


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def tls_files(stand: Stand) -> TlsFiles:
    folder = stand.dir / "tls"
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


def ensure_certificates(stand: Stand) -> TlsFiles:
    """The stand's CA and a server certificate for 127.0.0.1 and localhost signed by it (made once)."""
    files = tls_files(stand)
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    files.ca.parent.mkdir(mode=0o755, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ferry stand CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.ca.chmod(0o644)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.cert.chmod(0o644)
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.key.chmod(0o600)
    pg = pwd.getpwnam("postgres")
    os.chown(files.key, pg.pw_uid, pg.pw_gid)
    return files
