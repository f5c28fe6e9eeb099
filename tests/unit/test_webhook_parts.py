"""Webhooks' pure parts: the outbound policy, retry classification and backoff, the
signature (checked with the standardwebhooks library, as a receiver would), the body."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from graphmesh.config import Settings
from graphmesh.store.webhooks import redacted_url
from graphmesh.webhooks import payload
from graphmesh.webhooks.retry import DELIVERED, FAILED, RETRY, Result, backoff, classify, parse_retry_after
from graphmesh.webhooks.signing import Signer, check_secret, new_secret
from graphmesh.webhooks.targets import OutboundPolicy, RefusedTarget, Target

STRICT = OutboundPolicy()


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://localhost/hook", "loopback name"),
    ("http://api.localhost/hook", "loopback name"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://100.64.0.1/hook", "not global"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback (embedded"),
    ("http://[::ffff:169.254.169.254]/hook", "link-local (embedded"),
    ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local (embedded"),
    ("http://[2002:a00:1::]/hook", "private (embedded"),
    ("http://[fec0::1]/hook", "site-local"),
    ("http://[fec0:1:2::3]/hook", "site-local"),
    ("http://a b.example/hook", "not a valid host name"),
    ("http://hooks.example.com%20/hook", "not a valid host name"),
    ("http://under_score.example/hook", "not a valid host name"),
    ("http://a..b.example/hook", "not a valid host name"),
    ("http://x" + "a" * 70 + ".example/hook", "not a valid host name"),
    ("http://2130706433/hook", "loopback"),
    ("http://0x7f.1/hook", "loopback"),
    ("http://0177.0.0.1/hook", "loopback"),
    ("http://example.com:8080/hook", "port 8080 is not allowed"),
    ("http://example.com:0/hook", "port 0"),
    ("http://user:pw@example.com/hook", "credentials"),
    ("ftp://example.com/hook", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("http:///hook", "no host"),
    ("", "needs a url"),
    ("http://example.com/" + "a" * 3000, "longer than"),
])
def test_refused_targets(url, why):
    with pytest.raises(RefusedTarget) as err:
        STRICT.check_url(url)
    assert why in err.value.message
    assert err.value.code == "WEBHOOK_TARGET_REFUSED"


@pytest.mark.parametrize("url", ["https://hooks.example.com/in?x=1", "http://93.184.216.34/hook",
                                 "http://[2606:2800:220:1::1]/hook", "https://example.com:443/"])
def test_allowed_targets(url):
    target = STRICT.check_url(url)
    assert target.url == url and target.port in (80, 443)


def test_target_split_keeps_the_query():
    t = STRICT.check_url("https://Hooks.Example.com./in/x?a=1&b=2")
    assert (t.scheme, t.host, t.port, t.path) == ("https", "hooks.example.com", 443, "/in/x?a=1&b=2")


def test_unicode_hosts_are_sent_as_idna():
    t = STRICT.check_url("https://Bücher.example/x?y=1")
    assert (t.host, t.path) == ("xn--bcher-kva.example", "/x?y=1")
    domains = OutboundPolicy(allowed_domains=("xn--bcher-kva.example",))
    assert domains.check_url("https://hooks.bücher.example/").host == "hooks.xn--bcher-kva.example"
    assert _policy(WEBHOOK_ALLOWED_DOMAINS="bücher.example").allowed_domains == ("xn--bcher-kva.example",)


def test_redacted_url_keeps_only_scheme_host_and_port():
    assert redacted_url("https://hooks.slack.com/services/T0/B0/s3cret?token=abc#x") == "https://hooks.slack.com"
    assert redacted_url("http://user:pw@Example.com:8080/a/b") == "http://example.com:8080"
    assert redacted_url("http://[2606:2800:220:1::1]:443/t") == "http://[2606:2800:220:1::1]:443"


def _policy(**env) -> OutboundPolicy:
    return OutboundPolicy.from_settings(Settings.from_env({f"GRAPHMESH_{k}": v for k, v in env.items()}))


def test_domains_ports_and_networks_from_settings():
    p = _policy(WEBHOOK_ALLOWED_DOMAINS="example.com, Hooks.Org.", WEBHOOK_ALLOWED_PORTS="443,8443",
                WEBHOOK_ALLOWED_NETWORKS="10.2.0.0/16")
    assert p.check_url("https://a.b.example.com/").host == "a.b.example.com"
    assert p.check_url("https://hooks.org:8443/").port == 8443
    for url, why in [("https://example.com.evil.net/", "allowed domains"), ("https://notexample.com/", "allowed domains"),
                     ("http://example.com/", "port 80"), ("https://93.184.216.34/", "not an address")]:
        with pytest.raises(RefusedTarget, match=why):
            p.check_url(url)
    networks = _policy(WEBHOOK_ALLOWED_NETWORKS="10.2.0.0/16", WEBHOOK_ALLOWED_PORTS="*")
    assert networks.check_url("http://10.2.3.4:9000/").port == 9000
    with pytest.raises(RefusedTarget, match="private"):
        networks.check_url("http://10.3.0.1/")
    assert _policy(WEBHOOK_ALLOW_PRIVATE="1").check_url("http://127.0.0.1/").host == "127.0.0.1"
    with pytest.raises(ValueError, match="GRAPHMESH_WEBHOOK_ALLOWED_PORTS"):
        _policy(WEBHOOK_ALLOWED_PORTS="80,https")
    with pytest.raises(ValueError, match="GRAPHMESH_WEBHOOK_ALLOWED_NETWORKS"):
        _policy(WEBHOOK_ALLOWED_NETWORKS="10.2.0.0/99")


def test_resolution_is_checked_on_every_address():
    # "localhost" resolves to loopback: the policy refuses it at send time too (a DNS name
    # registered while it pointed elsewhere).
    open_names = OutboundPolicy(allowed_ports=None)
    target = Target(url="http://localhost/", scheme="http", host="localhost", port=80, path="/")
    with pytest.raises(RefusedTarget, match="loopback"):
        asyncio.run(open_names.resolve(target))
    assert asyncio.run(OutboundPolicy(allow_private=True).resolve(target)) in ("127.0.0.1", "::1")


@pytest.mark.parametrize("result, outcome", [
    (Result(status_code=200), DELIVERED),
    (Result(status_code=204), DELIVERED),
    (Result(status_code=500), RETRY),
    (Result(status_code=503), RETRY),
    (Result(status_code=429), RETRY),
    (Result(status_code=408), RETRY),
    (Result(kind="timeout", error="no answer"), RETRY),
    (Result(kind="network", error="ConnectError"), RETRY),
    (Result(status_code=400), FAILED),
    (Result(status_code=404), FAILED),
    (Result(status_code=410), FAILED),
    (Result(status_code=301, location="http://169.254.169.254/"), FAILED),
    (Result(status_code=307), FAILED),
    (Result(kind="refused", error="loopback"), FAILED),
])
def test_classify(result, outcome):
    got, reason = classify(result)
    assert got == outcome
    if result.status_code and 300 <= result.status_code < 400:
        assert "redirects are not followed" in reason


def test_backoff_grows_with_jitter_under_the_cap():
    rand = random.Random(7)
    for attempt in range(1, 12):
        d = min(3600.0, 5.0 * 4 ** (attempt - 1))
        samples = [backoff(attempt, base=5.0, cap=3600.0, rand=rand) for _ in range(200)]
        assert all(d / 2 <= s <= d for s in samples)
        assert len({round(s, 6) for s in samples}) > 150  # jittered, not a fixed schedule
    assert backoff(1, base=5, cap=3600, retry_after=120, rand=rand) == 120
    assert backoff(1, base=5, cap=3600, retry_after=10 ** 6, rand=rand) == 3600
    assert backoff(6, base=5, cap=3600, retry_after=1, rand=rand) >= 1800


def test_retry_after():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:01:00 GMT", now) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now) == 0.0


def test_signature_verifies_with_standard_webhooks():
    secret = new_secret()
    body = b'{"type":"run.completed","data":{"x":"\xc3\xa9"}}'
    headers = Signer(secret).headers("d-1", body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"type": "run.completed", "data": {"x": "é"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"completed", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    old = Signer(secret).headers("d-1", body, datetime.now(timezone.utc) - timedelta(hours=1))
    with pytest.raises(WebhookVerificationError):  # receivers refuse stale timestamps
        Webhook(secret).verify(body, old)


def test_secret_must_be_standard_webhooks_base64_and_long_enough():
    assert len(check_secret(new_secret())) == 32
    with pytest.raises(ValueError, match="whsec_ followed by base64"):
        check_secret("whsec_not base64!")
    with pytest.raises(ValueError, match="at least 24"):
        check_secret("whsec_c2hvcnQ=")


def _delivery(status: str):
    return SimpleNamespace(run_status=status, event_seq=7, created_at=datetime(2025, 1, 1, 0, 0, 5, tzinfo=timezone.utc))


def _run(status: str, error=None):
    from graphmesh.store import RunRecord, RunStatus

    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return RunRecord(run_id="00000000-0000-0000-0000-000000000001", thread_id="t", graph="tiny",
                     versions={k: "1" for k in ("graph_version", "prompt_version", "model_route", "tool_version",
                                                "state_schema_version")},
                     status=RunStatus(status), attempt=1, error=error, previous_errors=[], owner="alice",
                     idempotency_key="", metadata={}, input={}, multitask_strategy="reject", sync=False,
                     created_at=t0, started_at=t0 + timedelta(seconds=1), updated_at=t0 + timedelta(seconds=5),
                     finished_at=t0 + timedelta(seconds=5))


def test_payload_of_a_completed_run_holds_its_output_and_timings():
    state = SimpleNamespace(values={"summary": "ok", "n": 3}, metadata={"gm_run_id": _run("COMPLETED").run_id})
    p = payload.build(_delivery("COMPLETED"), _run("COMPLETED"), state)
    assert p["type"] == "run.completed" and p["timestamp"] == "2025-01-01T00:00:05+00:00"
    assert p["data"]["output"] == {"summary": "ok", "n": 3}
    assert p["data"]["status"] == "COMPLETED" and p["data"]["event_sequence"] == 7
    assert p["data"]["run"]["run_id"] == _run("COMPLETED").run_id and p["data"]["run"]["status"] == "RUN_STATUS_COMPLETED"
    assert p["data"]["timings"]["queued_seconds"] == 1.0 and p["data"]["timings"]["run_seconds"] == 4.0
    # Canonical bytes: the same payload, however its keys are ordered, is the same body.
    assert payload.body(p) == payload.body(dict(reversed(list(p.items()))))


def test_payload_of_a_failed_run_holds_its_error_and_no_output():
    from graphmesh.store.records import RunError

    p = payload.build(_delivery("FAILED"), _run("FAILED", RunError("NODE_ERROR", "boom", "count")), None)
    assert p["type"] == "run.failed"
    assert p["data"]["error"] == {"code": "NODE_ERROR", "message": "boom", "node": "count"}
    assert "output" not in p["data"]


def test_payload_leaves_out_output_the_run_did_not_write_or_too_big():
    run = _run("COMPLETED")
    moved = payload.build(_delivery("COMPLETED"), run, SimpleNamespace(values={"a": 1}, metadata={"gm_run_id": "other"}))
    assert moved["data"]["output"] is None and "moved on" in moved["data"]["output_unavailable"]
    big = SimpleNamespace(values={"a": "x" * (payload.MAX_OUTPUT_BYTES + 1)}, metadata={})
    assert "read it with GetThreadState" in payload.build(_delivery("COMPLETED"), run, big)["data"]["output_unavailable"]
    broken = payload.build(_delivery("WAITING_FOR_APPROVAL"), run, RuntimeError("graph not served"))
    assert broken["type"] == "run.waiting_for_approval" and "graph not served" in broken["data"]["output_unavailable"]


# The sender (graphmesh/webhooks/sender.py) against a local HTTP/1.1 server.

def test_no_connection_is_reused_between_attempts():
    """A pooled connection is picked by address alone (not by TLS server name), so two hosts
    on one IP would share one certificate check: every attempt opens its own connection."""
    from graphmesh.webhooks.sender import HttpSender

    async def main():
        connections = []

        async def serve(reader, writer):
            connections.append(writer)
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n")
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = HttpSender(OutboundPolicy(allow_private=True, allowed_ports=None), timeout_seconds=5)
        try:
            for _ in range(3):
                result = await sender.post(f"http://127.0.0.1:{port}/hook", b"{}", {})
                assert result.status_code == 200, result
        finally:
            await sender.aclose()
            server.close()
            for w in connections:
                w.close()
        return len(connections)

    assert asyncio.run(main()) == 3


# The dispatcher (graphmesh/webhooks/dispatcher.py) with a fake outbox and a fake sender.

class FakeOutbox:
    """DeliveryStore's interface over a list of due deliveries; records every call."""

    def __init__(self, due=(), gave_up=()):
        self.due = list(due)
        self.gave_up = list(gave_up)
        self.calls: list[tuple] = []
        self.claims: list[int] = []

    async def claim_due(self, *, limit, lease_seconds, max_attempts):
        self.claims.append(limit)
        gave_up, self.gave_up = self.gave_up[:limit], self.gave_up[limit:]
        n = limit - len(gave_up)
        claimed, self.due = self.due[:n], self.due[n:]
        return claimed, gave_up

    async def delivered(self, d, status_code):
        self.calls.append(("delivered", d.delivery_id, status_code))
        return True

    async def retry(self, d, *, delay, error, status_code):
        self.calls.append(("retry", d.delivery_id, error))
        return True

    async def failed(self, d, *, error, status_code):
        self.calls.append(("failed", d.delivery_id, error))
        return True

    async def release(self, d):
        self.calls.append(("release", d.delivery_id, d.attempts))
        return True


class FakeHttp:
    def __init__(self, post):
        self.post = post

    async def aclose(self):
        pass


TOKEN_URL = "https://hooks.example.com/services/T0/B0/s3cret-token?token=s3cret-token"


def _claimed(n: int = 1, attempts: int = 1, url: str = TOKEN_URL):
    from graphmesh.store.webhooks import Delivery

    t = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return Delivery(delivery_id=f"d-{n}", run_id="r-1", event_seq=1, run_status="COMPLETED", url=url,
                    status="PENDING", attempts=attempts, next_attempt_at=t, locked_until=t,
                    payload={"type": "run.completed"}, last_error="",
                    last_status_code=None, created_at=t, updated_at=t, delivered_at=None, graph="")


def _dispatcher(outbox, post, *, store=None, concurrency=16, max_attempts=3):
    from graphmesh.webhooks.dispatcher import WebhookDispatcher

    d = WebhookDispatcher(store=store, registry=None, pool=None, policy=STRICT, secret=new_secret(),
                          timeout_seconds=5, max_attempts=max_attempts, backoff_seconds=0.1,
                          backoff_max_seconds=1.0, concurrency=concurrency)
    d._deliveries, d._http = outbox, FakeHttp(post)
    return d


async def _raises_unicode(url, body, headers):
    return "bücher".encode("ascii")  # what httpx raised for a non-ASCII host


def test_an_attempt_that_raises_is_a_recorded_failed_attempt(caplog):
    outbox = FakeOutbox()
    dispatcher = _dispatcher(outbox, _raises_unicode)
    asyncio.run(dispatcher._attempt(_claimed(1, attempts=1)))
    asyncio.run(dispatcher._attempt(_claimed(2, attempts=3)))
    [(kind1, _, error1), (kind2, _, error2)] = outbox.calls
    assert kind1 == "retry" and error1.startswith("UnicodeEncodeError: ")
    assert kind2 == "failed" and error2.startswith("gave up after 3 attempts; the last: UnicodeEncodeError")
    # The log names the receiver by scheme and host only: its URL's path holds a token.
    assert "hooks.example.com" in caplog.text and "s3cret" not in caplog.text


def test_building_the_body_that_raises_is_a_recorded_failed_attempt():
    class BrokenStore:
        async def get_run(self, run_id):
            raise KeyError("no such column")

    outbox = FakeOutbox()
    unbuilt = dataclasses.replace(_claimed(), payload=None)  # its first attempt builds the body
    asyncio.run(_dispatcher(outbox, _raises_unicode, store=BrokenStore())._attempt(unbuilt))
    assert outbox.calls == [("retry", "d-1", "KeyError: 'no such column'")]


def test_an_outage_leaves_the_attempt_unrecorded_for_its_lease_to_lapse():
    from graphmesh.errors import Unavailable

    async def outage(url, body, headers):
        raise Unavailable("Postgres is unreachable; retry shortly")

    outbox = FakeOutbox()
    asyncio.run(_dispatcher(outbox, outage)._attempt(_claimed()))
    assert outbox.calls == []


def test_cancelling_an_attempt_in_flight_gives_its_claim_back():
    async def main():
        outbox = FakeOutbox()
        started = asyncio.Event()

        async def hang(url, body, headers):
            started.set()
            await asyncio.sleep(60)

        task = asyncio.create_task(_dispatcher(outbox, hang)._attempt(_claimed(attempts=2)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return outbox.calls

    assert asyncio.run(main()) == [("release", "d-1", 2)]


def test_a_step_claims_again_while_claims_fill_every_slot(caplog):
    from graphmesh.webhooks.retry import Result

    async def ok(url, body, headers):
        await asyncio.sleep(0.01)
        return Result(status_code=204)

    async def main():
        outbox = FakeOutbox(due=[_claimed(i) for i in range(7)], gave_up=[_claimed(99, attempts=3)])
        dispatcher = _dispatcher(outbox, ok, concurrency=2)
        claimed = await dispatcher.step()
        await asyncio.gather(*dispatcher._in_flight)
        return claimed, outbox

    claimed, outbox = asyncio.run(main())
    assert claimed == 7  # one step, not one claim of 2 per poll
    assert sorted(c[1] for c in outbox.calls) == sorted(f"d-{i}" for i in range(7))
    assert {c[0] for c in outbox.calls} == {"delivered"}
    assert outbox.claims[-1] > len(outbox.due)  # it stopped once a claim came back short
    assert "d-99" in caplog.text and "gave up after 3 attempts" in caplog.text and "s3cret" not in caplog.text
