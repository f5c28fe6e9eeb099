"""ReviewService. The review loop (approvals, decisions, resume) is the next milestone;
until then every RPC answers UNIMPLEMENTED with a readable message."""

from __future__ import annotations

from graphmesh.rpc.errors import abort_unimplemented
from graphmesh.v1 import review_service_pb2_grpc


class ReviewServicer(review_service_pb2_grpc.ReviewServiceServicer):
    async def ListApprovals(self, request, context):
        await abort_unimplemented(context, "ListApprovals")

    async def GetApproval(self, request, context):
        await abort_unimplemented(context, "GetApproval")

    async def WatchApprovals(self, request, context):
        await abort_unimplemented(context, "WatchApprovals")
        yield  # makes this a server-streaming handler

    async def Decide(self, request, context):
        await abort_unimplemented(context, "Decide")

    async def ListAuditRecords(self, request, context):
        await abort_unimplemented(context, "ListAuditRecords")
