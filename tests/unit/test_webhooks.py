"""Webhooks' pure parts: the outbound policy, retry classification and backoff, the
signature (checked with the standardwebhooks library, as a receiver would), the body."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from graphmesh.config import Settings
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
