"""The review process: ReviewService, approval expiry and the outbox relay."""

from __future__ import annotations

from graphmesh.approval_expiry import expire_forever
from graphmesh.auth.setup import make_authenticator
from graphmesh.bus.approvals import relay_outbox_forever
from graphmesh.lifecycle import RunLifecycle
from graphmesh.pollers import poll_approvals, poll_forever
from graphmesh.rpc.host import ServiceHost, loopback, process_settings
from graphmesh.store import ApprovalStore, RunStore
from graphmesh.v1 import review_service_pb2, review_service_pb2_grpc
from services.review.servicer import ReviewServicer
from services.review.web.app import make_app
from services.review.web.backend import ReviewBackend
from services.review.web.serve import ReviewPageServer


async def main() -> int:
    settings = process_settings("review")
    host = ServiceHost(settings)
    pool = await host.open_pool()
    nc = await host.connect_bus("graphmesh-review")
    js = nc.jetstream()
    runs = RunStore(pool)
    approvals = ApprovalStore(runs)
    lifecycle = RunLifecycle(runs, js)

    host.listen([review_service_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name],
                auth=make_authenticator(settings, approvals.runs))
    servicer = ReviewServicer(approvals=approvals, lifecycle=lifecycle, js=js, stopping=host.stopping)
    review_service_pb2_grpc.add_ReviewServiceServicer_to_server(servicer, host.grpc)

    host.supervise("approval expiry", expire_forever(lifecycle, approvals))
    host.supervise("approval outbox relay", relay_outbox_forever(js, approvals))
    if settings.review_web_listen:
        # The page calls this process's own ReviewService (and the api) with each reviewer's token.
        backend = ReviewBackend(review_address=loopback(host.address), api_address=settings.api_address)
        page = ReviewPageServer(make_app(backend), settings.review_web_listen,
                                ssl_certfile=settings.tls_cert_file, ssl_keyfile=settings.tls_key_file)
        host.supervise("review page", page.serve())
        host.on_stop(page.stop)
        host.on_close(backend.close)
    host.watch_dependencies(pool, nc)
    if settings.metrics_listen:
        host.supervise("approval metrics poller", poll_forever(poll_approvals, approvals.runs))
    return await host.run()
