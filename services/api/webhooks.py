"""WebhookService: the webhook outbox for operators (list deliveries, replay one)."""

from __future__ import annotations

from graphmesh.auth.principals import ALL_GRAPHS
from graphmesh.errors import InvalidArgument, PermissionDenied
from graphmesh.messages import status_to_proto, timestamp
from graphmesh.rpc.principal import caller
from graphmesh.store import RunStatus
from graphmesh.store.paging import page_size
from graphmesh.store.webhooks import STATUSES, Delivery, DeliveryStore
from graphmesh.v1 import webhook_service_pb2 as pb
from graphmesh.v1 import webhook_service_pb2_grpc


def delivery_to_proto(d: Delivery) -> pb.WebhookDelivery:
    msg = pb.WebhookDelivery(
        delivery_id=d.delivery_id, run_id=d.run_id, graph=d.graph, run_status=status_to_proto(RunStatus(d.run_status)),
        url=d.url, status=pb.WebhookDeliveryStatus.Value(f"WEBHOOK_DELIVERY_STATUS_{d.status}"),
        attempts=d.attempts, last_error=d.last_error, last_status_code=d.last_status_code or 0,
        event_sequence=d.event_seq)
    for field in ("next_attempt_at", "created_at", "updated_at", "delivered_at"):
        ts = timestamp(getattr(d, field))
        if ts is not None:
            getattr(msg, field).CopyFrom(ts)
    return msg


class WebhookServicer(webhook_service_pb2_grpc.WebhookServiceServicer):
    def __init__(self, store) -> None:
        self._deliveries = DeliveryStore(store)

    async def ListWebhookDeliveries(self, request, context):
        me = caller()
        me.require("operator", action="list webhook deliveries")
        size = page_size(request.page_size)
        status = ""
        if request.status:
            if request.status not in pb.WebhookDeliveryStatus.values():
                raise InvalidArgument(f"unknown webhook delivery status {request.status}")
            status = pb.WebhookDeliveryStatus.Name(request.status).removeprefix("WEBHOOK_DELIVERY_STATUS_")
            assert status in STATUSES
        deliveries, token = await self._deliveries.list(
            status=status, run_id=request.run_id, page_size=size, page_token=request.page_token,
            # An operator of some graphs sees their runs' deliveries only (not those of purged runs).
            graphs=None if me.covers(ALL_GRAPHS) else sorted(me.graphs))
        return pb.ListWebhookDeliveriesResponse(deliveries=[delivery_to_proto(d) for d in deliveries],
                                                next_page_token=token)

    async def ReplayWebhookDelivery(self, request, context):
        me = caller()
        delivery = await self._deliveries.get(request.delivery_id)
        if delivery.graph:
            me.require("operator", graph=delivery.graph, action=f"replay webhook delivery {delivery.delivery_id}")
        elif not (me.has("operator") and me.covers(ALL_GRAPHS)):
            raise PermissionDenied(f"{me.name} may not replay webhook delivery {delivery.delivery_id}: its run is "
                                   "gone, so only an operator of every graph may", code="GRAPH_NOT_COVERED")
        replayed = await self._deliveries.replay(delivery.delivery_id, actor=me.name, reason=request.reason)
        return pb.ReplayWebhookDeliveryResponse(delivery=delivery_to_proto(replayed))
