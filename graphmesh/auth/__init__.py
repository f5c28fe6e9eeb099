"""Who is calling and what they may do: tokens (static API tokens, JWTs), principals with
roles and graph scopes, the authenticator that turns a call's bearer token into one, and
the rules each RPC is authorised by. Nothing here imports the gRPC layer: the server
interceptor that runs the authenticator for every RPC is graphmesh/rpc/auth_interceptor.py.
See docs/security.md."""
