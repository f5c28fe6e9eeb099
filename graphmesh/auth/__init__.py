"""Who is calling and what they may do: tokens (static API tokens, JWTs), principals with
roles and graph scopes, the server interceptor that authenticates every RPC, and the
rules each RPC is authorised by. See docs/security.md."""
