"""`graphmesh webhooks list|replay` (WebhookService): the webhook outbox for operators."""

from __future__ import annotations

import argparse

from graphmesh.cli.render import as_json, status_name, table
from graphmesh.client import channel
from graphmesh.v1 import webhook_service_pb2 as pb
from graphmesh.v1 import webhook_service_pb2_grpc

TIMEOUT = 30.0
STATUSES = ("pending", "delivered", "failed")
COLUMNS = ["DELIVERY", "STATUS", "ATTEMPTS", "RUN", "EVENT", "URL", "CREATED", "LAST ERROR"]


def webhook_stub(address: str, token: str | None = None) -> webhook_service_pb2_grpc.WebhookServiceStub:
    # Here rather than in graphmesh.client's bundle: the CLI is its only user so far.
    return webhook_service_pb2_grpc.WebhookServiceStub(channel(address, token))


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    hooks = subparsers.add_parser("webhooks", help="webhook deliveries: list them, replay one (operators)") \
        .add_subparsers(dest="webhooks_command", required=True)
    ls = hooks.add_parser("list", help="deliveries, newest first", parents=[common])
    ls.add_argument("--status", choices=STATUSES, default="", help="only deliveries in this status")
    ls.add_argument("--run", default="", metavar="RUN_ID", help="only this run's deliveries")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--page-token", default="")
    ls.set_defaults(func=list_deliveries)
    replay = hooks.add_parser("replay", help="send a FAILED (or DELIVERED) delivery again: same body and "
                                             "webhook-id, attempts reset", parents=[common])
    replay.add_argument("delivery_id")
    replay.add_argument("--reason", default="", help="recorded in the audit trail")
    replay.set_defaults(func=replay_delivery)


def delivery_status_name(value: int) -> str:
    return pb.WebhookDeliveryStatus.Name(value).removeprefix("WEBHOOK_DELIVERY_STATUS_")


def _when(ts) -> str:
    return "-" if ts.seconds == 0 and ts.nanos == 0 else f"{ts.ToDatetime():%Y-%m-%d %H:%M:%S}"


def delivery_row(d) -> list[str]:
    error = d.last_error if len(d.last_error) <= 60 else d.last_error[:57] + "..."
    return [d.delivery_id, delivery_status_name(d.status), str(d.attempts), d.run_id, status_name(d.run_status),
            d.url, _when(d.created_at), error]


def list_deliveries(args) -> int:
    status = pb.WebhookDeliveryStatus.Value(f"WEBHOOK_DELIVERY_STATUS_{args.status.upper()}") if args.status else 0
    reply = webhook_stub(args.api).ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(
        status=status, run_id=args.run, page_size=args.limit, page_token=args.page_token), timeout=TIMEOUT)
    if args.json:
        print(as_json(reply))
        return 0
    if not reply.deliveries:
        print("no webhook deliveries")
    else:
        print(table(COLUMNS, [delivery_row(d) for d in reply.deliveries]))
    if reply.next_page_token:
        print(f"more: --page-token {reply.next_page_token}")
    return 0


def replay_delivery(args) -> int:
    d = webhook_stub(args.api).ReplayWebhookDelivery(pb.ReplayWebhookDeliveryRequest(
        delivery_id=args.delivery_id, reason=args.reason), timeout=TIMEOUT).delivery
    print(as_json(d) if args.json else
          f"delivery {d.delivery_id} of run {d.run_id} is {delivery_status_name(d.status)} again: "
          f"it will be posted to {d.url} shortly")
    return 0
