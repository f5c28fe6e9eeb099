"""`graphmesh certs create`: a local CA with server and client certificates for TLS / mTLS."""

from __future__ import annotations

from pathlib import Path

from graphmesh.certs import client_env, make_certificates, server_env


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("certs", help="local certificates for TLS and mutual TLS")
    sub = p.add_subparsers(dest="certs_command", required=True)
    create = sub.add_parser("create", help="write ca.pem, server.pem, server-key.pem, client.pem, client-key.pem")
    create.add_argument("--dir", type=Path, default=Path(".graphmesh/tls"), help="where (default .graphmesh/tls)")
    create.add_argument("--host", action="append", default=None,
                        help="a host name or IP the server certificate is valid for (repeatable; "
                             "default 127.0.0.1 and localhost)")
    create.set_defaults(func=create_certs)


def create_certs(args) -> int:
    hosts = args.host or ["127.0.0.1", "localhost"]
    make_certificates(args.dir, hosts)
    print(f"certificates for {', '.join(hosts)} written to {args.dir}")
    print("services (mutual TLS):")
    for k, v in server_env(args.dir).items():
        print(f"  export {k}={v}")
    print("clients (the CLI):")
    for k, v in client_env(args.dir).items():
        print(f"  export {k}={v}")
    return 0
