"""Secrets: a node reads the secrets its graph declares (get_secret) from the worker's
environment (GRAPHMESH_SECRET_<NAME>) or a mounted directory (GRAPHMESH_SECRETS_DIR), and
their values end up nowhere: not in run records, approvals, audit, checkpoints (raw
bytes), spans, JetStream messages or any service log, though the graph logs, prints,
streams, stores and raises them. Graph `secret_user` (tests/fixtures/security.yaml); the
chat graph (graphs/chat_agent.py) as `secret_chat`, which declares CHAT_PHRASE, added to a
copy of that manifest here."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import tempfile
import uuid
from pathlib import Path

import nats
import psycopg
import pytest
from google.protobuf import json_format
from psycopg import sql

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import run_pb2, run_service_pb2
from helpers import (
    COMPLETED,
    FAILED,
    WAITING,
    create_run,
    decide,
    kinds,
    new_thread,
    private_mesh,
    stream_events,
    struct,
    thread_values,
    to_dict,
    wait_approvals,
    wait_for,
    wait_status,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "security.yaml"
API_KEY = f"sk-{uuid.uuid4().hex}"
DB_PASSWORD = f"pw-{uuid.uuid4()}"
SECRETS = (API_KEY, DB_PASSWORD)
# Spaces make the chat graph's fake model stream it in five token chunks.
CHAT_PHRASE = f"open sesame {uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def secrets_dir():
    directory = Path(tempfile.mkdtemp(prefix="graphmesh-secrets-"))
    (directory / "DB_PASSWORD").write_text(DB_PASSWORD + "\n")  # a mounted secret file
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def manifest():
    """security.yaml plus the chat graph declaring CHAT_PHRASE."""
    directory = Path(tempfile.mkdtemp(prefix="graphmesh-secrets-manifest-"))
    text = MANIFEST.read_text().replace("./security_graphs.py", str(MANIFEST.parent / "security_graphs.py"))
    text += ("\n  - name: secret_chat\n    version: \"1\"\n    path: graphs.chat_agent:graph\n"
             "    limits: {run_timeout_seconds: 120}\n    secrets: [CHAT_PHRASE]\n")
    (directory / "graphmesh.yaml").write_text(text)
    yield directory / "graphmesh.yaml"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def smesh(secrets_dir, manifest):
    env = {"GRAPHMESH_SECRET_API_KEY": API_KEY, "GRAPHMESH_SECRETS_DIR": str(secrets_dir),
           "GRAPHMESH_SECRET_CHAT_PHRASE": CHAT_PHRASE}
    with private_mesh("secrets", manifest=manifest, workers=1, extra_env=env) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def client(smesh):
    c = api_client(smesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def failed_run(smesh, client):
    """The run that used, logged, printed, streamed, stored and raised both secrets."""
    run = create_run(client, "secret_user", {"message": "pay 42"}, thread_id=new_thread("sec"))
    final = wait_status(client, run.run_id, {COMPLETED, FAILED})
    # Everything it wrote has reached its store: its node spans (batched every 500 ms) and
    # the worker log lines its failing node wrote (logged and printed).
    wait_for(lambda: _spans(smesh, run.run_id, "node explode"), message="the explode node's span")
    wait_for(lambda: all(line in smesh.log_path("worker-1").read_text()
                         for line in ("about to call upstream", "stdout: key")), message="the node's log lines")
    return final


def _spans(mesh, run_id: str, name: str) -> int:
    with psycopg.connect(mesh.database_url) as conn:
        return conn.execute("SELECT count(*) FROM gm_spans WHERE run_id = %s AND name = %s",
                            (run_id, name)).fetchone()[0]


def _leaks_in(text_or_bytes) -> list[str]:
    data = text_or_bytes if isinstance(text_or_bytes, bytes) else str(text_or_bytes).encode()
    return [s for s in SECRETS if s.encode() in data]


def _postgres_leaks(mesh) -> list[str]:
    """Every value of every row of every table: text and jsonb as text, bytea raw."""
    found = []
    with psycopg.connect(mesh.database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
        assert {"gm_runs", "gm_approvals", "gm_audit", "gm_spans", "checkpoints", "checkpoint_blobs",
                "checkpoint_writes"} <= set(tables)
        for table in tables:
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            columns = [c.name for c in cur.description]
            for row in cur.fetchall():
                for column, value in zip(columns, row):
                    if isinstance(value, memoryview):
                        value = bytes(value)
                    elif isinstance(value, (dict, list)):
                        value = json.dumps(value, ensure_ascii=False)
                    for secret in _leaks_in(value if isinstance(value, bytes) else str(value)):
                        found.append(f"{table}.{column}: {secret[:6]}...")
    return found


def _jetstream_leaks(mesh) -> list[str]:
    """Every message still in every JetStream stream (events, approvals, queue), raw."""
    async def scan() -> list[str]:
        nc = await nats.connect(mesh.nats_url)
        try:
            js = nc.jetstream()
            found = []
            streams = await js.streams_info()
            assert any(info.state.messages for info in streams)
            for info in streams:
                if not info.state.messages:
                    continue
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    try:
                        msg = await js.get_msg(info.config.name, seq)
                    except nats.js.errors.NotFoundError:
                        continue
                    if leaks := _leaks_in((msg.data or b"") + repr(msg.headers).encode()):
                        found.append(f"{info.config.name}#{seq}: {len(leaks)} secret(s)")
            return found
        finally:
            await nc.close()

    return asyncio.run(scan())


def test_the_run_used_its_secrets_and_failed_with_them_redacted(client, failed_run):
    assert failed_run.status == FAILED
    assert failed_run.error.code == "NODE_FAILED" and failed_run.error.node == "explode"
    assert failed_run.error.message == "node 'explode' failed: RuntimeError: upstream rejected key *** (password ***)"
    values = thread_values(client, failed_run.thread_id)
    # The node had the real key (the HMAC is right) and its careless copies were stored redacted.
    assert values["signature"] == hmac.new(API_KEY.encode(), b"pay 42", hashlib.sha256).hexdigest()
    assert values["careless"] == "key=***"
    assert values["nested"] == {"k": ["***"]}


def test_events_carry_the_progress_redacted(client, failed_run):
    events = stream_events(client, failed_run.run_id)
    assert "custom" in kinds(events)
    (custom,) = [e for e in events if e.WhichOneof("kind") == "custom"]
    assert json_format.MessageToDict(custom.custom.data) == {
        "progress": "calling upstream with ***", "password": "***"}
    text = "".join(json_format.MessageToJson(e) for e in events)
    assert not _leaks_in(text)


def test_no_store_holds_a_secret(smesh, failed_run):
    assert not _postgres_leaks(smesh)
    assert not _jetstream_leaks(smesh)


def test_no_log_holds_a_secret(smesh, failed_run):
    logs = sorted(smesh.log_dir.glob("*"))
    assert smesh.log_path("worker-1") in logs and smesh.log_path("api") in logs
    worker = smesh.log_path("worker-1").read_text()
    assert "about to call upstream with key *** and password ***" in worker
    assert "stdout: key *** password ***" in worker
    assert "upstream rejected key ***" in worker  # the node's traceback, redacted
    for path in logs:
        if path.is_file():
            assert not _leaks_in(path.read_bytes()), f"{path.name} holds a secret"


def test_an_undeclared_secret_is_refused(client, smesh):
    run = create_run(client, "secret_user", {"message": "x", "mode": "undeclared"}, thread_id=new_thread("sec"))
    final = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert final.status == FAILED and final.error.code == "NODE_FAILED" and final.error.node == "sign"
    assert "'NOT_DECLARED' is not declared by graph 'secret_user'" in final.error.message
    assert "API_KEY" in final.error.message  # names what is declared


def test_a_secret_hidden_in_state_fails_the_run_once_and_is_never_stored(smesh, client):
    """The checkpoint write refuses a secret it cannot redact (SecretInState, an
    ExecutionError): the run fails with GRAPH_ERROR on its first attempt, not redelivered
    as if it were an outage, and nothing holds the key."""
    run = create_run(client, "secret_hider", {}, thread_id=new_thread("hide"))
    final = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert final.status == FAILED and final.error.code == "GRAPH_ERROR", final.error
    assert "holds a secret" in final.error.message and API_KEY not in final.error.message
    assert final.attempt == 1 and len(final.previous_errors) == 0
    assert _postgres_leaks(smesh) == []


def test_a_secret_in_an_interrupt_payload_is_redacted_in_the_approval(smesh, client):
    run = create_run(client, "secret_asker", {}, thread_id=new_thread("ask"))
    waiting = wait_status(client, run.run_id, {WAITING, FAILED})
    assert waiting.status == WAITING, waiting.error.message  # not SecretInState
    review = review_stub(smesh.review_address)
    (approval,) = wait_approvals(review, run.run_id, 1)
    payload = to_dict(approval.payload)
    assert payload == {"question": "charge with key ***?", "key": "***"}
    decide(review, approval.approval_id, "approve")
    assert wait_status(client, run.run_id, {COMPLETED, FAILED}).status == COMPLETED
    assert thread_values(client, run.thread_id)["approved"] is True
    assert _postgres_leaks(smesh) == []


def test_a_secret_a_model_streams_token_by_token_is_redacted_in_the_messages_stream(smesh, client):
    """The reply starts with the phrase (the run's configurable reply_prefix, as if the model
    had read it), streamed in five chunks ("open", " ", "sesame", " ", hex): no chunk holds it,
    so only redaction across the chunks of the message catches it. The reply then cannot be
    checkpointed (a secret inside a message is refused), but the stream went out first."""
    request = run_service_pb2.CreateRunRequest(
        graph="secret_chat", thread_id=new_thread("chat"),
        options=run_pb2.RunOptions(stream_modes=["messages"], configurable=struct({"reply_prefix": f"{CHAT_PHRASE} "})))
    request.input.update({"messages": [{"role": "user", "content": "hi"}]})
    run = client.runs.CreateRun(request, timeout=30).run
    events = stream_events(client, run.run_id)
    final = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert final.status == COMPLETED or "holds a secret" in final.error.message, final.error.message
    messages = [json_format.MessageToDict(e.stream_chunk.data) for e in events
                if e.WhichOneof("kind") == "stream_chunk" and e.stream_chunk.mode == "messages"]
    assert len({m["id"] for m, _ in messages}) == 1 and len(messages) >= 8  # one reply, token by token
    assert "".join(m["content"] for m, _ in messages) == "*** You said: hi"
    chunks = "".join(json_format.MessageToJson(e) for e in events if e.WhichOneof("kind") == "stream_chunk")
    assert CHAT_PHRASE.split()[-1] not in chunks
    # Every event, not only the chunks: node_finished carries the reply as a LangChain message,
    # redacted once it is JSON (redact_value does not look inside message objects).
    assert CHAT_PHRASE.split()[-1] not in "".join(json_format.MessageToJson(e) for e in events)
