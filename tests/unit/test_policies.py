"""Node policy gate, secrets and redaction, the graph serializer's allow-list and the
saver's state size measure: pure logic, no servers."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import operator
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Annotated

import pydantic
import pytest
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphmesh import secrets
from graphmesh.execution.policies import PolicyGate, PolicyViolation
from graphmesh.execution.saver import GraphSerializer, StateTooLarge, TracedPostgresSaver, saver_for
from graphmesh.guard import gate_nodes, guarded
from graphmesh.logs import JsonFormatter
from graphmesh.manifest import GraphSpec, Limits, NodePolicy
from graphmesh.store import RunRecord, RunStatus


@dataclasses.dataclass
class Receipt:
    amount: int
    note: str


QUALIFIED = f"{Receipt.__module__}.Receipt"


@pytest.fixture(autouse=True)
def clean_secrets(monkeypatch):
    secrets._reset_for_tests()
    monkeypatch.delenv(secrets.DIR_ENV, raising=False)
    yield
    secrets._reset_for_tests()


# -- serializer allow-list ------------------------------------------------------------------


def test_a_class_not_on_the_allow_list_comes_back_as_plain_data():
    state = {"receipt": Receipt(3, "refund"), "when": datetime(2024, 1, 2, tzinfo=timezone.utc)}
    serde = GraphSerializer()
    back = serde.loads_typed(serde.dumps_typed(state))
    assert not isinstance(back["receipt"], Receipt)
    assert back["receipt"] == {"amount": 3, "note": "refund"}  # its data, nothing constructed
    assert back["when"] == state["when"]  # LangGraph's safe types still come back as themselves


def test_an_allow_listed_class_comes_back_as_itself():
    serde = GraphSerializer([QUALIFIED])
    back = serde.loads_typed(serde.dumps_typed({"receipt": Receipt(3, "refund")}))
    assert back["receipt"] == Receipt(3, "refund")


def test_a_graphs_saver_uses_its_allow_list_and_limit():
    async def build():
        spec = GraphSpec(name="g", version="1", path="x:y", serde_allowlist=(QUALIFIED,),
                         limits=Limits(max_state_bytes=1234))
        return saver_for(None, spec), saver_for(None, spec, enforce_limits=False)

    saver, reader = asyncio.run(build())
    assert saver.max_state_bytes == 1234 and reader.max_state_bytes == 0
    assert saver.serde.loads_typed(saver.serde.dumps_typed(Receipt(1, "a"))) == Receipt(1, "a")


# -- state size ----------------------------------------------------------------------------


def _checkpoint(values: dict, versions: dict) -> dict:
    return {"id": str(uuid.uuid4()), "channel_values": values, "channel_versions": versions}


def test_state_size_counts_blobs_as_serialized_and_inline_values_as_json():
    async def measure():
        saver = TracedPostgresSaver(None, max_state_bytes=10_000)
        values = {"text": "é" * 10, "n": 12345, "items": ["a" * 100, "b" * 100]}
        size = await saver._state_size(_checkpoint(values, {"text": "1", "n": "1", "items": "1"}), {"items": "1"})
        blob = len(saver.serde.dumps_typed(values["items"])[1])
        assert size == len(json.dumps("é" * 10, ensure_ascii=False).encode()) + len("12345") + blob
        # The blob serialized to measure it is the one the write stores (not serialized twice).
        assert saver._dump_blobs("t", "", values, {"items": "1"})[0][-1] == saver.serde.dumps_typed(values["items"])[1]
        # A channel unchanged since it was measured is not serialized again.
        saver.serde = None  # would fail if used
        again = await saver._state_size(_checkpoint(values, {"text": "1", "n": "1", "items": "1"}), {})
        assert again == size

    asyncio.run(measure())


def test_state_too_large_names_the_limit_and_the_size():
    exc = StateTooLarge(5000, 4096, 3)
    assert "5000 bytes" in str(exc) and "max_state_bytes=4096" in str(exc) and "step 3" in str(exc)
    assert isinstance(exc, RuntimeError)  # retry policies skip it


# -- secrets -------------------------------------------------------------------------------


def test_get_secret_reads_declared_secrets_from_the_environment_then_the_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHMESH_SECRET_API_KEY", "from-env-123")
    (tmp_path / "API_KEY").write_text("from-file-123\n")
    (tmp_path / "DB_PASSWORD").write_text("file-password\n")
    monkeypatch.setenv(secrets.DIR_ENV, str(tmp_path))
    with secrets.secret_scope("g", ["API_KEY", "DB_PASSWORD"]):
        assert secrets.get_secret("API_KEY") == "from-env-123"  # the environment comes first
        assert secrets.get_secret("DB_PASSWORD") == "file-password"  # one trailing newline dropped


def test_get_secret_refuses_undeclared_and_missing_names_and_outside_runs(monkeypatch):
    monkeypatch.setenv("GRAPHMESH_SECRET_OTHER", "other-value")
    with pytest.raises(secrets.SecretError, match="outside a graphmesh run"):
        secrets.get_secret("API_KEY")
    with secrets.secret_scope("payments", ["API_KEY"]):
        with pytest.raises(secrets.SecretNotDeclared) as caught:
            secrets.get_secret("OTHER")
        assert "'OTHER' is not declared by graph 'payments'" in str(caught.value)
        assert "other-value" not in str(caught.value)
        with pytest.raises(secrets.SecretNotFound, match="GRAPHMESH_SECRET_API_KEY"):
            secrets.get_secret("API_KEY")


def test_secret_scope_reaches_threads_of_sync_nodes(monkeypatch):
    monkeypatch.setenv("GRAPHMESH_SECRET_API_KEY", "thread-secret")

    async def main():
        with secrets.secret_scope("g", ["API_KEY"]):
            loop = asyncio.get_running_loop()
            import contextvars
            ctx = contextvars.copy_context()
            return await loop.run_in_executor(None, lambda: ctx.run(secrets.get_secret, "API_KEY"))

    assert asyncio.run(main()) == "thread-secret"


def test_known_values_are_redacted_from_text_values_logs_and_serialized_state(monkeypatch):
    value = f"s3cr3t-{uuid.uuid4()}"
    monkeypatch.setenv("GRAPHMESH_SECRET_API_KEY", value)
    with secrets.secret_scope("g", ["API_KEY"]):  # entering remembers the declared values
        pass
    assert secrets.redact(f"key={value}!") == "key=***!"
    assert secrets.redact_value({"a": [value, (1, f"x{value}")], value: "k"}) == {"a": ["***", (1, "x***")], "***": "k"}
    assert secrets.redact_value(RuntimeError(f"bad {value}")) == "RuntimeError('bad ***')"
    assert secrets.redact("tiny") == "tiny"

    # Log lines, including tracebacks, through the process's formatter.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        secrets.install_redaction()
        try:
            raise ValueError(f"failed with {value}")
        except ValueError:
            logging.getLogger("x").exception("calling with %s", value)
    finally:
        root.removeHandler(handler)
    assert value not in stream.getvalue() and "***" in stream.getvalue()

    # Checkpoint values and writes: redacted before they are stored.
    serde = GraphSerializer()
    stored = serde.dumps_typed({"careless": f"key={value}", "error": RuntimeError(value)})
    assert value.encode() not in stored[1]
    assert serde.loads_typed(stored) == {"careless": "key=***", "error": "RuntimeError('***')"}

    # Inline (primitive) channel values bypass the serializer: the saver redacts them.
    async def redacted():
        return TracedPostgresSaver(None)._redacted(_checkpoint({"s": f"v {value}", "n": 1}, {}))

    assert asyncio.run(redacted())["channel_values"] == {"s": "v ***", "n": 1}


class Opaque(pydantic.BaseModel):
    """An object the redactor does not look inside (a pydantic model, not a dataclass)."""

    note: str


def test_a_secret_hidden_in_an_object_is_refused_not_stored():
    secrets.remember("hidden-secret-value")
    with pytest.raises(ValueError, match="holds a secret"):
        GraphSerializer().dumps_typed({"opaque": Opaque(note="hidden-secret-value")})


def test_a_secret_in_a_dataclass_is_redacted_like_langgraphs_interrupt():
    from langgraph.types import Interrupt

    secrets.remember("hidden-secret-value")
    serde = GraphSerializer([QUALIFIED])
    stored = serde.dumps_typed({"receipt": Receipt(1, "key hidden-secret-value")})
    assert b"hidden-secret-value" not in stored[1]
    assert serde.loads_typed(stored) == {"receipt": Receipt(1, "key ***")}
    # An interrupt() payload is checkpointed as an Interrupt: redacted there, not fatal.
    write = serde.dumps_typed((Interrupt(value={"q": "use hidden-secret-value"}, id="i-1"),))
    assert b"hidden-secret-value" not in write[1]


# -- the policy gate -----------------------------------------------------------------------


class FakeStore:
    def __init__(self, rows):
        self.rows, self.queries = rows, 0

    @asynccontextmanager
    async def connection(self):
        store = self

        class Conn:
            async def execute(self, sql, params):
                store.queries += 1

                class Cursor:
                    async def fetchall(self):
                        return [{"node": n} for n in store.rows]
                return Cursor()

        yield Conn()


def _run(owner_roles=("submitter",)) -> RunRecord:
    now = datetime.now(timezone.utc)
    return RunRecord(run_id=str(uuid.uuid4()), thread_id="t", graph="g", versions={"graph_version": "1"},
                     status=RunStatus.RUNNING, attempt=1, error=None, previous_errors=[], owner="alice",
                     idempotency_key="", metadata={}, input={}, multitask_strategy="reject", sync=False,
                     created_at=now, started_at=now, updated_at=now, finished_at=None,
                     owner_roles=list(owner_roles))


def _spec(**nodes: NodePolicy) -> GraphSpec:
    return GraphSpec(name="g", version="1", path="x:y", nodes=MappingProxyType(nodes))


def test_a_mutating_node_needs_an_approval_naming_it_and_the_gate_asks_once():
    spec = _spec(apply=NodePolicy(mutates=True, requires_approval=True),
                 other=NodePolicy(mutates=True, requires_approval=True),
                 review=NodePolicy(requires_approval=True))  # asks, does not mutate: not gated

    async def main():
        store = FakeStore(["review", "apply"])  # approval of node review, payload node apply
        gate = PolicyGate(store, _run(), spec)
        await gate.check("g", "apply")
        await gate.check("g", "apply")
        await gate.check("g", "review")
        await gate.check("g", "plain")
        await gate.check("another_graph", "other")  # not this run's graph
        with pytest.raises(PolicyViolation) as caught:
            await gate.check("g", "other")
        assert store.queries == 1
        return caught.value

    violation = asyncio.run(main())
    assert violation.node == "other" and violation.policy == "requires_approval"
    assert "node 'other'" in str(violation) and "requires_approval" in str(violation)
    assert "no approved or edited approval" in str(violation)


def test_owner_role_needs_the_role_or_admin():
    spec = _spec(deploy=NodePolicy(owner_role="deployer"))

    async def check(roles):
        await PolicyGate(FakeStore([]), _run(roles), spec).check("g", "deploy")

    asyncio.run(check(["submitter", "deployer"]))
    asyncio.run(check(["admin"]))
    with pytest.raises(PolicyViolation) as caught:
        asyncio.run(check(["submitter"]))
    text = str(caught.value)
    assert caught.value.policy == "owner_role" and "'deployer'" in text and "alice" in text and "submitter" in text


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]


def test_the_guard_runs_the_gate_before_sync_and_async_node_bodies():
    ran = []

    def a(state):
        ran.append("a")
        return {"log": ["a"]}

    async def b(state):
        ran.append("b")
        return {"log": ["b"]}

    builder = StateGraph(State)
    builder.add_node("a", a)
    builder.add_node("b", b)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    graph = guarded(builder, "g").compile()

    class Gate:
        def __init__(self, refuse):
            self.refuse, self.seen = refuse, []

        async def check(self, graph, node, config):
            assert config["metadata"]["langgraph_node"] == node
            self.seen.append(node)
            if node == self.refuse:
                raise PolicyViolation(graph, node, "owner_role", f"no {node}")

        def check_sync(self, graph, node, config):
            raise AssertionError("astream must use the async path")

    async def main(gate):
        with gate_nodes(gate):
            return await graph.ainvoke({})

    gate = Gate(refuse="b")
    with pytest.raises(PolicyViolation):
        asyncio.run(main(gate))
    assert ran == ["a"] and gate.seen == ["a", "b"]  # b's body never ran
    ran.clear()
    assert asyncio.run(main(Gate(refuse=None)))["log"] == ["a", "b"]

    # A synchronous stream passes the gate's synchronous check.
    sync_builder = StateGraph(State)
    sync_builder.add_node("a", a)
    sync_builder.add_edge(START, "a")
    sync_builder.add_edge("a", END)
    sync_graph = guarded(sync_builder, "g").compile()
    seen = []

    class SyncGate:
        async def check(self, graph, node, config):
            raise AssertionError("invoke must use the sync path")

        def check_sync(self, graph, node, config):
            seen.append(node)

    with gate_nodes(SyncGate()):
        assert sync_graph.invoke({})["log"] == ["a"]
    assert seen == ["a"]
    assert sync_graph.invoke({})["log"] == ["a"]  # no gate: every node runs


def test_a_mutating_node_waits_for_the_checkpoint_it_follows():
    async def main():
        saver = TracedPostgresSaver(None, max_state_bytes=10)
        saver._reached(0)  # loaded or written: the checkpoint of step 0
        await saver.settled(1)  # a node of step 1 follows it: no wait
        waiter = asyncio.ensure_future(saver.settled(3))  # follows step 2's checkpoint
        await asyncio.sleep(0)
        saver._reached(1)
        await asyncio.sleep(0)
        assert not waiter.done()
        saver.too_large = StateTooLarge(20, 10, 2)  # step 2's checkpoint refused
        saver._reached(2)
        with pytest.raises(StateTooLarge):
            await waiter
        with pytest.raises(StateTooLarge):  # and every later node is stopped at once
            await saver.settled(9)

    asyncio.run(main())


def test_a_mutating_node_does_not_start_after_a_checkpoint_that_could_not_be_written(monkeypatch):
    """Postgres went away while step 1's checkpoint was saved in the background: the node of
    step 2 with outside effects must not run ahead of its state (it would run again, under
    another task, when the run resumes from step 0)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import OperationalError

    from graphmesh.errors import Unavailable

    async def unreachable(self, config, checkpoint, metadata, new_versions):
        raise OperationalError("connection refused")

    monkeypatch.setattr(AsyncPostgresSaver, "aput", unreachable)

    async def main():
        saver = TracedPostgresSaver(None)
        saver._reached(0)
        waiter = asyncio.ensure_future(saver.settled(2))  # follows step 1's checkpoint
        await asyncio.sleep(0)
        root = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        with pytest.raises(OperationalError):
            await saver.aput(root, _checkpoint({"n": 1}, {"n": "1"}), {"step": 1}, {})
        with pytest.raises(Unavailable, match="could not be written"):
            await waiter
        with pytest.raises(Unavailable):  # and every later node with outside effects
            await saver.settled(5)

    asyncio.run(main())


def test_a_misspelt_allow_list_entry_fails_the_version_at_load():
    from graphmesh.errors import FailedPrecondition
    from graphmesh.registry import Registry

    good = GraphSpec(name="tiny", version="1", path="graphs.tiny:graph", serde_allowlist=("datetime.datetime",))
    bad = GraphSpec(name="tiny", version="2", path="graphs.tiny:graph", serde_allowlist=("datetime.DateTyme",))
    registry = Registry([good, bad])
    registry.compiled("tiny", "1")
    with pytest.raises(FailedPrecondition) as caught:
        registry.compiled("tiny", "2")
    assert caught.value.code == "GRAPH_LOAD_FAILED" and "datetime.DateTyme" in caught.value.message
