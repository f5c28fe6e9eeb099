"""TLS for gRPC: server credentials (optionally requiring client certificates: mutual TLS)
and the matching client credentials. Files are PEM; `graphmesh certs create` makes a local
CA and certificates for development."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


@dataclass(frozen=True)
class ServerTls:
    cert_file: str
    key_file: str
    client_ca_file: str = ""  # set: mutual TLS

    @classmethod
    def from_settings(cls, settings) -> "ServerTls | None":
        if not settings.tls_cert_file and not settings.tls_key_file:
            return None
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise ValueError("set both GRAPHMESH_TLS_CERT_FILE and GRAPHMESH_TLS_KEY_FILE")
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)

    def credentials(self) -> grpc.ServerCredentials:
        ca = _read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials([(_read(self.key_file), _read(self.cert_file))],
                                           root_certificates=ca, require_client_auth=ca is not None)


def client_credentials(ca_file: str, cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials:
    """Trusts `ca_file`; with a certificate and key, presents them (mutual TLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file),
        private_key=_read(key_file) if key_file else None,
        certificate_chain=_read(cert_file) if cert_file else None)
