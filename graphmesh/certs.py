"""Local certificates for TLS and mutual TLS between graphmesh processes and clients:
a CA, a server certificate (for the given host names and IPs) and a client certificate,
made with `cryptography`. For development and tests; production uses its own PKI."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "graphmesh local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False, sans=(), usage=None,
          days: int = 365) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_certificates(directory: Path, hosts: list[str]) -> dict[str, Path]:
    """Writes ca.pem, server.pem/server-key.pem (valid for `hosts`) and client.pem/client-key.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("graphmesh local CA", ca_key, _name("graphmesh local CA"), ca_key, ca=True, days=3650)
    sans = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    pem = serialization.Encoding.PEM
    _write(directory / "ca.pem", ca.public_bytes(pem))
    for role, usage, extra in (("server", ExtendedKeyUsageOID.SERVER_AUTH, sans),
                               ("client", ExtendedKeyUsageOID.CLIENT_AUTH, ())):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"graphmesh {role}", key, ca.subject, ca_key, sans=extra, usage=usage)
        _write(directory / f"{role}.pem", cert.public_bytes(pem))
        _write(directory / f"{role}-key.pem", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()), private=True)
    return {name: directory / name for name in FILES}


def server_env(directory: Path, *, mutual: bool = True) -> dict[str, str]:
    """GRAPHMESH_TLS_* for the services, from a directory make_certificates wrote."""
    env = {"GRAPHMESH_TLS_CERT_FILE": str(directory / "server.pem"),
           "GRAPHMESH_TLS_KEY_FILE": str(directory / "server-key.pem")}
    if mutual:
        env["GRAPHMESH_TLS_CLIENT_CA_FILE"] = str(directory / "ca.pem")
    return env


def client_env(directory: Path, *, with_certificate: bool = True) -> dict[str, str]:
    """GRAPHMESH_TLS_* for clients (the CLI, graphmesh.client)."""
    env = {"GRAPHMESH_TLS_CA_FILE": str(directory / "ca.pem")}
    if with_certificate:
        env |= {"GRAPHMESH_TLS_CLIENT_CERT_FILE": str(directory / "client.pem"),
                "GRAPHMESH_TLS_CLIENT_KEY_FILE": str(directory / "client-key.pem")}
    return env
