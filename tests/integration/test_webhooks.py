"""Webhooks end to end: a private mesh with the production outbound policy, opened to one
address (127.0.0.2, via GRAPHMESH_WEBHOOK_ALLOWED_NETWORKS) where a local receiver listens;
127.0.0.1 stays refused, and a trap receiver there proves nothing reaches it.

Deliveries are checked as a receiver would: the signature with the standardwebhooks
library and the deployment's secret (the one the mesh generated), the body's JSON."""

from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import datetime, timezone

import grpc
import psycopg
import pytest
from standardwebhooks import Webhook

from graphmesh.cli import main as cli_main
from graphmesh.client import api_client, review_stub
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import run_pb2, webhook_service_pb2_grpc
from graphmesh.v1 import webhook_service_pb2 as wpb
from helpers import (
    COMPLETED,
    WAITING,
    create_run,
    decide,
    new_thread,
    private_mesh,
    rpc_error,
    wait_approvals,
    wait_for,
    wait_status,
)

RECEIVER_HOST = "127.0.0.2"
BACKOFF = 0.4  # GRAPHMESH_WEBHOOK_BACKOFF_SECONDS: the n-th retry waits at least BACKOFF * 4^(n-1) / 2
MAX_ATTEMPTS = 3
DELIVERED = wpb.WEBHOOK_DELIVERY_STATUS_DELIVERED
FAILED = wpb.WEBHOOK_DELIVERY_STATUS_FAILED


class Receiver:
    """An HTTP server on its own thread that records every request and answers each path
    with its script of responses (the last one repeats): an int status, ("redirect", url),
    or ("hang", seconds): no answer for that long."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.requests: list[dict] = []
        self.scripts: dict[str, list] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body})
                script = receiver.scripts.get(self.path, [200])
                answer = script.pop(0) if len(script) > 1 else script[0]
                if isinstance(answer, tuple) and answer[0] == "hang":
                    time.sleep(answer[1])
                    self.close_connection = True
                    return
                if isinstance(answer, tuple):
                    self.send_response(302)
                    self.send_header("location", answer[1])
                else:
                    self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}{path}"

    def at(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver(RECEIVER_HOST)
    yield r
    r.close()


@pytest.fixture(scope="module")
def trap(receiver):
    """On 127.0.0.1, which the policy refuses, at the receiver's (allowed) port: only the
    address rule stands between it and a webhook. It must never be asked anything."""
    r = Receiver("127.0.0.1", receiver.port)
    yield r
    r.close()


@pytest.fixture(scope="module")
def mesh(receiver):
    env = {
        "GRAPHMESH_WEBHOOK_ALLOWED_NETWORKS": f"{RECEIVER_HOST}/32",
        "GRAPHMESH_WEBHOOK_ALLOWED_PORTS": f"80,443,{receiver.port}",
        "GRAPHMESH_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "GRAPHMESH_WEBHOOK_BACKOFF_SECONDS": str(BACKOFF),
        "GRAPHMESH_WEBHOOK_SECONDS": "0.1",
    }
    with private_mesh("webhooks", workers=1, webhook_local_targets=False, extra_env=env) as m:
        yield m


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def hooks(mesh):
    return webhook_service_pb2_grpc.WebhookServiceStub(grpc.insecure_channel(mesh.api_address))


@pytest.fixture(scope="module")
def secret(mesh):
    return (mesh.data_dir / "webhook-secret").read_text().strip()


def webhook_run(client, receiver, path: str, graph: str = "tiny", inputs: dict | None = None, **webhook):
    return create_run(client, graph, inputs if inputs is not None else {"text": "hello webhooks"},
                      thread_id=new_thread("wh"), webhook=run_pb2.Webhook(url=receiver.url(path), **webhook))


def deliveries(hooks, run_id: str) -> list:
    return list(hooks.ListWebhookDeliveries(wpb.ListWebhookDeliveriesRequest(run_id=run_id), timeout=10).deliveries)


def wait_delivery(hooks, run_id: str, status: int, count: int = 1):
    def check():
        found = [d for d in deliveries(hooks, run_id) if d.status == status]
        return found if len(found) >= count else None
    return wait_for(check, 60, interval=0.1, message=lambda: f"{count} deliveries of run {run_id} in "
                    f"{wpb.WebhookDeliveryStatus.Name(status)}: {deliveries(hooks, run_id)}")


def verified(secret: str, request: dict) -> dict:
    """The body as a receiver reads it, after Standard Webhooks verification (raises if invalid)."""
    return Webhook(secret).verify(request["body"], request["headers"])


def test_a_completed_run_is_delivered_signed_with_its_output(client, hooks, receiver, secret):
    run = webhook_run(client, receiver, "/ok")
    wait_status(client, run.run_id, COMPLETED)
    [delivery] = wait_delivery(hooks, run.run_id, DELIVERED)
    [request] = wait_for(lambda: receiver.at("/ok"), 30)
    body = verified(secret, request)
    assert request["headers"]["webhook-id"] == delivery.delivery_id
    assert request["headers"]["host"] == f"{RECEIVER_HOST}:{receiver.port}"
    assert body["type"] == "run.completed"
    assert body["data"]["status"] == "COMPLETED"
    assert body["data"]["run"]["run_id"] == run.run_id
    assert body["data"]["run"]["webhook"]["url"] == receiver.url("/ok")
    assert body["data"]["output"]["summary"]  # the tiny graph's output values
    # The timings describe this run: its own timestamps, and the durations between them.
    timings = body["data"]["timings"]
    started, finished = (datetime.fromisoformat(timings[k]) for k in ("started_at", "finished_at"))
    assert datetime.fromisoformat(timings["created_at"]) == run.created_at.ToDatetime(timezone.utc)
    assert timings["run_seconds"] == round((finished - started).total_seconds(), 3)
    assert delivery.attempts == 1 and delivery.last_status_code == 200 and delivery.run_status == COMPLETED
    assert delivery.graph == "tiny" and delivery.HasField("delivered_at")


def test_500s_are_retried_until_delivered(client, hooks, receiver, secret):
    """How long each retry waits is the backoff's (tests/unit/test_webhook_parts.py); here:
    a 500 and a 503 are retried, and the third attempt delivers."""
    receiver.scripts["/flaky"] = [500, 503, 200]
    run = webhook_run(client, receiver, "/flaky")
    [delivery] = wait_delivery(hooks, run.run_id, DELIVERED)
    tries = receiver.at("/flaky")
    assert len(tries) == 3 and delivery.attempts == 3 and delivery.last_status_code == 200
    # Every attempt sends the same bytes under the same id, each signed anew.
    assert len({t["body"] for t in tries}) == 1 and len({t["headers"]["webhook-id"] for t in tries}) == 1
    for t in tries:
        verified(secret, t)


def test_failed_after_the_last_attempt_then_listed_and_replayed(client, hooks, receiver, secret, mesh, capsys):
    down = "/down?token=s3cret"  # Slack-style: the URL carries the receiver's token
    receiver.scripts[down] = [500]
    run = webhook_run(client, receiver, down)
    [delivery] = wait_delivery(hooks, run.run_id, FAILED)
    assert delivery.attempts == MAX_ATTEMPTS and len(receiver.at(down)) == MAX_ATTEMPTS
    assert delivery.last_status_code == 500 and f"gave up after {MAX_ATTEMPTS} attempts" in delivery.last_error

    assert cli_main(["--api", mesh.api_address, "--json", "webhooks", "list", "--status", "failed"]) == 0
    listed = json.loads(capsys.readouterr().out)["deliveries"]
    assert delivery.delivery_id in [d["delivery_id"] for d in listed]
    assert {d["status"] for d in listed} == {"WEBHOOK_DELIVERY_STATUS_FAILED"}

    receiver.scripts[down] = [200]
    assert cli_main(["--api", mesh.api_address, "webhooks", "replay", delivery.delivery_id,
                     "--reason", "receiver fixed"]) == 0
    assert "PENDING again" in capsys.readouterr().out
    [replayed] = wait_delivery(hooks, run.run_id, DELIVERED)
    assert replayed.delivery_id == delivery.delivery_id and replayed.attempts == 1
    # The audit record names the receiver, not its token.
    with psycopg.connect(mesh.database_url) as conn:
        [(details,)] = conn.execute("SELECT details FROM gm_audit WHERE action = 'webhook_replayed' AND "
                                    "details->>'delivery_id' = %s", (delivery.delivery_id,)).fetchall()
    assert details["url"] == f"http://{RECEIVER_HOST}:{receiver.port}" and details["reason"] == "receiver fixed"
    assert "s3cret" not in json.dumps(details)
    tries = receiver.at(down)
    assert len(tries) == MAX_ATTEMPTS + 1 and tries[-1]["body"] == tries[0]["body"]
    verified(secret, tries[-1])


def _outbox(mesh, sql: str, args=()):
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def _add_delivery(mesh, run_id: str, url: str, *, attempts: int = 0) -> str:
    """A delivery written straight into the outbox for an existing run, as the trigger would
    (with `attempts` already used, and a lapsed lease when there were any)."""
    [(delivery_id,)] = _outbox(mesh, """
        INSERT INTO gm_webhook_deliveries (run_id, event_seq, run_status, url, attempts, locked_until)
        VALUES (%s, (SELECT coalesce(max(event_seq), 0) + 1000 FROM gm_webhook_deliveries WHERE run_id = %s),
                'COMPLETED', %s, %s, CASE WHEN %s > 0 THEN now() - interval '1 second' END)
        RETURNING delivery_id""", (run_id, run_id, url, attempts, attempts))
    return str(delivery_id)


def _delivery(hooks, run_id: str, delivery_id: str, status: int):
    return wait_for(lambda: next((d for d in deliveries(hooks, run_id)
                                  if d.delivery_id == delivery_id and d.status == status), None), 60,
                    interval=0.1, message=lambda: f"delivery {delivery_id} in {wpb.WebhookDeliveryStatus.Name(status)}: "
                                                  f"{deliveries(hooks, run_id)}")


def test_an_attempt_that_raises_is_a_failed_attempt_and_ends_failed(client, hooks, receiver, mesh):
    """An error the sender does not expect (here httpx refusing a URL with a control
    character) is recorded like any failed attempt: retried, then FAILED at the limit, never
    retried forever on a lapsing lease."""
    run = webhook_run(client, receiver, "/base")
    wait_delivery(hooks, run.run_id, DELIVERED)
    delivery_id = _add_delivery(mesh, run.run_id, receiver.url("/bad\x7fpath"))
    failed = _delivery(hooks, run.run_id, delivery_id, FAILED)
    assert failed.attempts == MAX_ATTEMPTS
    assert failed.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts; the last: InvalidURL")
    assert not [r for r in receiver.requests if r["path"].startswith("/bad")]


def test_a_delivery_out_of_attempts_is_failed_not_claimed(client, hooks, receiver, mesh):
    """Its last attempt was claimed but never recorded (the sender died): it is not sent again."""
    run = webhook_run(client, receiver, "/base2")
    wait_delivery(hooks, run.run_id, DELIVERED)
    delivery_id = _add_delivery(mesh, run.run_id, receiver.url("/exhausted"), attempts=MAX_ATTEMPTS)
    failed = _delivery(hooks, run.run_id, delivery_id, FAILED)
    assert failed.attempts == MAX_ATTEMPTS and f"gave up after {MAX_ATTEMPTS} attempts" in failed.last_error
    assert receiver.at("/exhausted") == []


def _outbox_row(mesh, run_id: str, status: str):
    with psycopg.connect(mesh.database_url) as conn:
        return conn.execute("SELECT status, attempts FROM gm_webhook_deliveries WHERE run_id = %s AND run_status = %s",
                            (run_id, status)).fetchone()


def test_a_run_that_ends_while_the_api_is_down_is_still_delivered(client, hooks, receiver, secret, mesh):
    review = review_stub(mesh.review_address)
    run = webhook_run(client, receiver, "/crash", graph="approval_workflow",
                      inputs={"action": "refund", "target": "cust-1", "amount": 5.0}, on_waiting=True)
    wait_status(client, run.run_id, WAITING)
    [approval] = wait_approvals(review, run.run_id, 1)
    # Asked for: the wait for approval is posted too.
    [waiting] = wait_for(lambda: receiver.at("/crash"), 30)
    assert verified(secret, waiting)["type"] == "run.waiting_for_approval"
    wait_for(lambda: _outbox_row(mesh, run.run_id, "WAITING_FOR_APPROVAL") == ("DELIVERED", 1), 30)

    mesh.stop_service("api", kill=True)  # the only sender crashes
    decide(review, approval.approval_id, "approve")
    # The worker finishes the run; its delivery waits in the outbox, attempted by nobody.
    assert wait_for(lambda: _outbox_row(mesh, run.run_id, "COMPLETED"), 60) == ("PENDING", 0)
    assert len(receiver.at("/crash")) == 1

    mesh.start_service("api")
    [completed] = wait_for(lambda: receiver.at("/crash")[1:], 60)
    body = verified(secret, completed)
    assert body["type"] == "run.completed" and body["data"]["run"]["run_id"] == run.run_id
    # The receiver answered before the sender recorded it: wait for the record.
    wait_for(lambda: _outbox_row(mesh, run.run_id, "COMPLETED") == ("DELIVERED", 1), 30)


def test_a_graceful_stop_gives_the_claims_in_flight_back(client, hooks, receiver, secret, mesh):
    """A deploy (SIGTERM) cancels the attempts in flight: their claims are released with the
    attempt uncounted and no lease to wait out, and the next sender posts them again."""
    receiver.scripts["/slow"] = [("hang", 5), 200]
    run = webhook_run(client, receiver, "/slow")
    wait_for(lambda: receiver.at("/slow"), 30)  # the attempt is in flight
    mesh.stop_service("api")
    assert _outbox(mesh, "SELECT status, attempts, locked_until FROM gm_webhook_deliveries WHERE run_id = %s",
                   (run.run_id,)) == [("PENDING", 0, None)]
    mesh.start_service("api")
    [delivery] = wait_delivery(hooks, run.run_id, DELIVERED)
    assert delivery.attempts == 1 and len(receiver.at("/slow")) == 2
    verified(secret, receiver.at("/slow")[1])


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:{port}/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://" + RECEIVER_HOST + ":1/", "port 1 is not allowed"),
    ("http://localhost:{port}/", "loopback name"),
])
def test_refused_targets_are_refused_at_create(client, trap, url, why):
    # {port}: the receiver's port, which the policy allows, so the address is what is refused.
    with pytest.raises(grpc.RpcError) as err:
        create_run(client, "tiny", {"text": "x"}, webhook=run_pb2.Webhook(url=url.format(port=trap.port)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(err.value) == "WEBHOOK_TARGET_REFUSED" and why in err.value.details()


def test_a_redirect_is_not_followed(client, hooks, receiver, trap):
    receiver.scripts["/moved"] = [("redirect", trap.url("/trap"))]
    run = webhook_run(client, receiver, "/moved")
    [delivery] = wait_delivery(hooks, run.run_id, FAILED)
    assert delivery.attempts == 1 and delivery.last_status_code == 302
    assert "redirects are not followed" in delivery.last_error and trap.url("/trap") in delivery.last_error
    assert trap.requests == []



def test_purging_a_thread_deletes_its_runs_deliveries(client, hooks, receiver):
    """A delivery's stored body holds the run's output: an erasure request takes it too."""
    from graphmesh.v1 import run_service_pb2 as rpb

    run = webhook_run(client, receiver, "/purged")
    wait_delivery(hooks, run.run_id, DELIVERED)
    client.runs.PurgeThread(rpb.PurgeThreadRequest(thread_id=run.thread_id, reason="erasure request"), timeout=30)
    assert deliveries(hooks, run.run_id) == []


def test_a_run_is_deleted_only_once_its_webhook_went_out(client, hooks, receiver):
    """DeleteRun takes the run's deliveries with it, but not one still to be sent (its body is
    built from the run): FAILED_PRECONDITION until it went out."""
    from graphmesh.v1 import run_service_pb2 as rpb

    receiver.scripts["/held"] = [("hang", 5), 200]  # the first attempt hangs: the delivery stays PENDING
    run = webhook_run(client, receiver, "/held")
    wait_status(client, run.run_id, COMPLETED)
    request = rpb.DeleteRunRequest(run_id=run.run_id, reason="cleanup")
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "WEBHOOK_DELIVERY_PENDING"):
        client.runs.DeleteRun(request, timeout=30)
    wait_delivery(hooks, run.run_id, DELIVERED)
    assert client.runs.DeleteRun(request, timeout=30).deleted["webhook_deliveries"] == 1
    assert deliveries(hooks, run.run_id) == []
