"""AuthService: who am I, and token management for admins."""

from __future__ import annotations

from graphmesh.auth.principals import current
from graphmesh.auth.tokens import TokenStore
from graphmesh.messages import timestamp
from graphmesh.v1 import auth_service_pb2 as pb
from graphmesh.v1 import auth_service_pb2_grpc


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens

    async def WhoAmI(self, request, context):
        me = current()
        return pb.WhoAmIResponse(principal=me.name, roles=sorted(me.roles), graphs=sorted(me.graphs),
                                 authenticated_by=me.via)

    async def CreateToken(self, request, context):
        token_id, token = await self._tokens.create(request.principal, list(request.roles), list(request.graphs),
                                                    created_by=current().name)
        return pb.CreateTokenResponse(token_id=token_id, token=token)

    async def ListTokens(self, request, context):
        tokens = []
        for t in await self._tokens.list():
            info = pb.TokenInfo(token_id=t.token_id, principal=t.principal, roles=t.roles, graphs=t.graphs,
                                created_by=t.created_by, created_at=timestamp(t.created_at))
            if t.revoked_at is not None:
                info.revoked_at.CopyFrom(timestamp(t.revoked_at))
            tokens.append(info)
        return pb.ListTokensResponse(tokens=tokens)

    async def RevokeToken(self, request, context):
        await self._tokens.revoke(request.token_id)
        return pb.RevokeTokenResponse()
