"""`graphmesh tokens create|list|revoke` and `graphmesh whoami` (AuthService)."""

from __future__ import annotations

import argparse

from graphmesh.cli.render import as_json
from graphmesh.client import auth_stub
from graphmesh.v1 import auth_service_pb2 as pb

TIMEOUT = 30.0


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    who = subparsers.add_parser("whoami", help="the principal, roles and graphs of your token", parents=[common])
    who.set_defaults(func=whoami)
    tokens = subparsers.add_parser("tokens", help="API tokens (admins)").add_subparsers(
        dest="tokens_command", required=True)
    create = tokens.add_parser("create", help="a new static API token, shown once", parents=[common])
    create.add_argument("principal")
    create.add_argument("--role", action="append", required=True,
                        help="submitter, reviewer, operator, admin, or an approval role (repeatable)")
    create.add_argument("--graph", action="append", default=[], help="a graph it covers (repeatable; default all)")
    create.set_defaults(func=create_token)
    ls = tokens.add_parser("list", help="tokens and who made them (never their values)", parents=[common])
    ls.set_defaults(func=list_tokens)
    revoke = tokens.add_parser("revoke", help="stop a token working, everywhere within seconds", parents=[common])
    revoke.add_argument("token_id")
    revoke.set_defaults(func=revoke_token)


def whoami(args) -> int:
    me = auth_stub(args.api).WhoAmI(pb.WhoAmIRequest(), timeout=TIMEOUT)
    print(as_json(me) if args.json else
          f"{me.principal}  roles {', '.join(me.roles)}  graphs {', '.join(me.graphs)}  ({me.authenticated_by})")
    return 0


def create_token(args) -> int:
    reply = auth_stub(args.api).CreateToken(pb.CreateTokenRequest(principal=args.principal, roles=args.role,
                                                                  graphs=args.graph), timeout=TIMEOUT)
    if args.json:
        print(as_json(reply))
    else:
        print(f"token {reply.token_id} for {args.principal} (shown once, store it now):\n{reply.token}")
    return 0


def list_tokens(args) -> int:
    reply = auth_stub(args.api).ListTokens(pb.ListTokensRequest(), timeout=TIMEOUT)
    if args.json:
        print(as_json(reply))
        return 0
    for t in reply.tokens:
        state = "revoked" if t.HasField("revoked_at") else "active"
        print(f"{t.token_id}  {t.principal:<16} {state:<8} roles {','.join(t.roles)}  graphs {','.join(t.graphs)}  "
              f"by {t.created_by}")
    return 0


def revoke_token(args) -> int:
    auth_stub(args.api).RevokeToken(pb.RevokeTokenRequest(token_id=args.token_id), timeout=TIMEOUT)
    print(f"token {args.token_id} revoked")
    return 0
