"""Property-based fuzzing of every RPC of every service, on a private mesh with development
auth (GRAPHMESH_AUTH=none) so that calls get past authentication and reach the handlers.

For each method: requests built from hypothesis strategies over the request's fields
(field-name-aware strings that hit real graphs, runs, threads and approvals, or odd and
huge ones; integers at their limits; unknown enum values; Struct inputs with nested,
non-finite and deeply nested values), then raw bytes through a generic channel (wire
format with mismatched types and out-of-range varints, and plain garbage).

Properties: no call ends in INTERNAL or UNKNOWN (the offending requests are collected and
reported per method); afterwards every process still runs, reports SERVING and completes a
tiny run. Malformed bodies (which do not parse) must be INVALID_ARGUMENT
(test_malformed_request_is_invalid_argument). Requests this fuzzing once turned into
INTERNAL are kept as regression cases (KNOWN_CASES).

Left out on purpose: WorkerService/Drain with anything that parses (every DrainRequest is
valid and would drain the mesh's only worker); it gets only bodies that cannot parse.
SetRollout / RollbackGraph / DisableNode / EnableNode are fuzzed with real graph and node
names; the mesh's rollouts and switches are restored before the final checks.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import uuid
from collections import Counter

import grpc
import pytest
from google.protobuf import message_factory, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from graphmesh.client import api_client, channel
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import (
    assistant_service_pb2,
    auth_service_pb2,
    graph_service_pb2,
    review_service_pb2,
    review_service_pb2_grpc,
    run_service_pb2,
    schedule_service_pb2,
    store_service_pb2,
    thread_service_pb2,
    webhook_service_pb2,
    worker_service_pb2,
)
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import (
    COMPLETED,
    WAITING,
    create_run,
    new_thread,
    private_mesh,
    wait_approvals,
    wait_status,
)

BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
# The server's answer lost on the way: its status message was too big for the trailers.
LOST_STATUS = "metadata size exceeds"


def _is_bad(code, details: str) -> bool:
    return code in BAD or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and LOST_STATUS in details)
UNARY_TIMEOUT = 8.0
STREAM_TIMEOUT = 1.0
# Per method; GRAPHMESH_FUZZ_SCALE=5 (say) fuzzes five times as long, for a deeper search.
SCALE = float(os.environ.get("GRAPHMESH_FUZZ_SCALE", "1"))
EXAMPLES = int(40 * SCALE)
STREAM_EXAMPLES = int(12 * SCALE)
RAW_EXAMPLES = int(30 * SCALE)

FUZZ_SETTINGS = dict(deadline=None, database=None, derandomize=False, print_blob=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                            HealthCheck.data_too_large, HealthCheck.large_base_example])


def _rpcs() -> dict[str, object]:
    """'Service/Method' -> method descriptor, for every service of graphmesh.v1."""
    out = {}
    for module in (run_service_pb2, graph_service_pb2, review_service_pb2, worker_service_pb2, auth_service_pb2,
                   schedule_service_pb2, webhook_service_pb2, thread_service_pb2, assistant_service_pb2,
                   store_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out[f"{service.name}/{m.name}"] = m
    return out


RPCS = _rpcs()
NEVER_VALID = {"WorkerService/Drain"}  # only bodies that cannot parse are sent
MESSAGE_METHODS = sorted(set(RPCS) - NEVER_VALID)


def _request_class(path: str):
    return message_factory.GetMessageClass(RPCS[path].input_type)


def _parses(path: str, body: bytes) -> bool:
    try:
        _request_class(path).FromString(body)
    except Exception:
        return False
    return True


# -- the mesh ------------------------------------------------------------------------------

class Target:
    """The fuzzed mesh, known ids to aim at, and what went wrong so far."""

    def __init__(self, mesh) -> None:
        self.mesh = mesh
        self.client = api_client(mesh.api_address, token="")
        self.review_channel = channel(mesh.review_address, token="")
        self.review = review_service_pb2_grpc.ReviewServiceStub(self.review_channel)
        self.channels: dict[str, grpc.Channel] = {}
        self.seeds: dict[str, list[str]] = {}
        self.outcomes: Counter = Counter()

    def address(self, service: str) -> str:
        return {"ReviewService": self.mesh.review_address, "WorkerService": self.mesh.worker_addresses[0]}.get(
            service, self.mesh.api_address)

    def channel_for(self, service: str) -> grpc.Channel:
        if service not in self.channels:
            self.channels[service] = grpc.insecure_channel(
                self.address(service), options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        return self.channels[service]

    def call(self, path: str, body: bytes, metadata=()) -> tuple[grpc.StatusCode, str, str]:
        """Sends `body` as is; streams are read for at most a few messages and STREAM_TIMEOUT."""
        ch = self.channel_for(path.split("/")[0])
        full = f"/graphmesh.v1.{path}"
        try:
            if RPCS[path].server_streaming:
                call = ch.unary_stream(full)(body, metadata=list(metadata), timeout=STREAM_TIMEOUT)
                for i, _ in enumerate(call):
                    if i >= 3:
                        call.cancel()
                        break
            else:
                ch.unary_unary(full)(body, metadata=list(metadata), timeout=UNARY_TIMEOUT)
        except grpc.RpcError as err:
            code = err.code()
            self.outcomes[(path, code.name)] += 1
            return code, error_code(err), err.details() or ""
        self.outcomes[(path, "OK")] += 1
        return grpc.StatusCode.OK, "", ""

    def cause(self, details: str) -> str:
        """For an INTERNAL answer: the last line of the exception the service logged under its ref."""
        match = re.search(r"\(ref ([0-9a-f]{12})\)", details)
        if not match:
            return ""
        needle = f"(ref {match.group(1)})"
        for name in self.mesh.service_names:
            try:
                lines = self.mesh.log_path(name).read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if needle in line:
                    try:
                        exception = json.loads(line).get("exception", "")
                    except ValueError:
                        return f"{name}: {line[-200:]}"
                    lines = exception.splitlines()
                    # From the exception's own line ("module.Class: message") to the end (psycopg adds DETAIL).
                    starts = [i for i, ln in enumerate(lines) if re.match(r"[A-Za-z_][\w.]*(: |$)", ln)
                              and not ln.startswith(("DETAIL", "CONTEXT", "HINT", "Traceback"))]
                    return f"{name}: {' | '.join(lines[starts[-1]:] if starts else ['?'])[:300]}"
        return ""

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()
        self.review_channel.close()
        self.client.close()


@pytest.fixture(scope="module")
def target():
    with private_mesh("fuzz", workers=1) as mesh:
        t = Target(mesh)
        try:
            done = create_run(t.client, "tiny", {"text": "seed run"}, thread_id=new_thread("seed"))
            waiting = create_run(t.client, "approval_workflow", {"action": "refund", "target": "o-1", "amount": 3},
                                 thread_id=new_thread("seed"))
            parallel = create_run(t.client, "parallel_review", {"request": "r"}, thread_id=new_thread("seed"))
            wait_status(t.client, done.run_id, COMPLETED)
            wait_status(t.client, waiting.run_id, WAITING)
            wait_status(t.client, parallel.run_id, WAITING)
            approvals = [a.approval_id for r in (waiting, parallel)
                         for a in wait_approvals(t.review, r.run_id, 1 if r is waiting else 2)]
            graphs = t.client.graphs.ListGraphs(gpb.ListGraphsRequest(), timeout=10).graphs
            t.seeds = {
                "run": [done.run_id, waiting.run_id, parallel.run_id],
                "thread": [done.thread_id, waiting.thread_id, parallel.thread_id],
                "approval": approvals,
                "graph": [g.name for g in graphs],
                "node": sorted({n for g in graphs for v in g.versions for n in v.nodes}),
                "version": sorted({v.versions.graph_version for g in graphs for v in g.versions}),
            }
            # What the fuzzing may change and the final checks put back.
            t.initial_weights = {g.name: {v.versions.graph_version: v.weight for v in g.versions} for g in graphs}
            yield t
        finally:
            t.close()


# -- strategies ----------------------------------------------------------------------------

def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


U = str(uuid.uuid4())
SPECIAL_STRINGS = [
    "", " ", "\x00", "a\x00b", "\t\n\r", "ñandú", "💥" * 40, "\u202etxt.exe", "\ufeff", "\U0010ffff",
    "*", "-1", "0", "1", "NaN", "null", "true", "[]", "{}", "%s%s%n", "' OR 1=1 --", "'; DROP TABLE gm_runs; --",
    "../../etc/passwd", "${jndi:ldap://x}", "<script>", U, U.upper(), "{" + U + "}", "urn:uuid:" + U,
    U.replace("-", ""), "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "x" * 300, "x" * 5000, "y" * 70_000, "é" * 40_000,
    # page tokens: wrong shapes, odd dates, deep JSON
    _b64("[]"), _b64('["2024-01-01T00:00:00", "not-a-uuid"]'), _b64(f'["2024-01-01T00:00:00", "{U}"]'),
    _b64(f'["0001-01-01T00:00:00-14:00", "{U}"]'), _b64(f'["9999-12-31T23:59:59+14:00", "{U}"]'),
    _b64(f'[1, "{U}"]'), _b64('{"a": 1}'), _b64(_deep_json(50_000)), "!!!", "====",
]


SEED_KEYS = {"run_id": "run", "thread_id": "thread", "approval_id": "approval", "graph": "graph", "node": "node",
             "graph_version": "version"}


def plausible_strings(name: str, seeds: dict[str, list[str]]) -> st.SearchStrategy[str]:
    """What a well-meaning client would send: real ids and names, short text."""
    key = SEED_KEYS.get(name)
    if key and seeds.get(key):
        if name in ("thread_id", "graph_version"):  # empty: a new thread, the rollout's version
            return st.one_of(st.just(""), st.sampled_from(seeds[key]))
        return st.sampled_from(seeds[key])
    if name == "principal":
        return st.from_regex(r"\A[a-z][a-z0-9]{0,10}\Z")
    if name in ("roles", "role"):
        return st.sampled_from(["submitter", "reviewer", "operator", "admin", "finance", "legal"])
    if name == "page_token":
        return st.just("")
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


def strings(name: str, seeds: dict[str, list[str]]) -> st.SearchStrategy[str]:
    options = [
        st.sampled_from(SPECIAL_STRINGS),
        st.text(max_size=30),
        st.uuids().map(str),
        st.text(st.characters(codec="utf-8"), min_size=1000, max_size=3000),
    ]
    key = SEED_KEYS.get(name)
    if key and seeds.get(key):
        options.insert(0, st.sampled_from(seeds[key]))
        options.insert(0, st.sampled_from(seeds[key]))  # aim at real things more often
    if name == "principal":
        options.insert(0, st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,70}\Z"))
    if name in ("roles", "role"):
        options.insert(0, st.sampled_from(["submitter", "reviewer", "operator", "admin", "finance", "legal"]))
    return st.one_of(options)


UINT32 = st.one_of(st.sampled_from([0, 1, 2, 49, 50, 100, 101, 999, 1000, 1001, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]),
                   st.integers(0, 2 ** 32 - 1))
UINT64 = st.one_of(st.sampled_from([0, 1, 2, 5, 10, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1]),
                   st.integers(0, 2 ** 64 - 1))
INT32 = st.one_of(st.sampled_from([-(2 ** 31), -1, 0, 1, 2 ** 31 - 1]), st.integers(-(2 ** 31), 2 ** 31 - 1))
INT64 = st.one_of(st.sampled_from([-(2 ** 63), -1, 0, 1, 2 ** 63 - 1]), st.integers(-(2 ** 63), 2 ** 63 - 1))

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2 ** 63), 2 ** 63),
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "x" * 70_000, "refund", "deploy"]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def struct_values(graph_inputs: bool, plausible: bool = False) -> st.SearchStrategy[dict]:
    if plausible:
        return st.one_of(
            st.fixed_dictionaries({"text": st.text(max_size=40)}),
            st.fixed_dictionaries({"action": st.sampled_from(["refund", "deploy"]), "target": st.text(max_size=10)},
                                  optional={"amount": st.floats(0, 1000), "reason": st.text(max_size=10)}),
            st.fixed_dictionaries({"question": st.text(min_size=1, max_size=40)}),
            st.fixed_dictionaries({"request": st.text(max_size=20)}, optional={"amount": st.floats(0, 1000)}),
        )
    options = [
        st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=6),
        st.integers(20, 120).map(_nested),  # protobuf parses at most 100 levels
        st.just({}),
    ]
    if graph_inputs:  # inputs the example graphs accept, with odd values
        options += [
            st.fixed_dictionaries({"text": st.one_of(st.text(max_size=200), st.sampled_from(SPECIAL_STRINGS))}),
            st.fixed_dictionaries({"action": st.sampled_from(["refund", "deploy", "other", ""]),
                                   "target": st.text(max_size=20)},
                                  optional={"amount": JSON_SCALARS, "reason": JSON_VALUES,
                                            "requested_by": st.text(max_size=10)}),
            st.fixed_dictionaries({"question": st.text(max_size=80)}),
            st.fixed_dictionaries({"request": st.text(max_size=40)}, optional={"amount": JSON_SCALARS}),
        ]
    return st.one_of(options)


def _fill_struct(target: struct_pb2.Struct, value: dict) -> None:
    try:
        target.update(value)
    except (ValueError, TypeError, OverflowError):  # not representable client side (e.g. ints beyond a double)
        target.update({"unrepresentable": str(value)[:100]})


def field_strategy(field, seeds, depth: int, plausible: bool = False) -> st.SearchStrategy:
    t = field.type
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        if field.name == "weights":
            versions = st.sampled_from(seeds.get("version", ["1"]) + ["", "999", "x"])
            split = st.integers(0, 100).map(lambda w: {"1": w, "2": 100 - w})
            if plausible:
                return st.one_of(split, st.just({"1": 100}))
            return st.one_of(st.dictionaries(versions, UINT32, max_size=3), split, st.just({"1": 100}))
        return st.dictionaries(field_strategy(key_field, seeds, depth, plausible),
                               field_strategy(value_field, seeds, depth, plausible), max_size=5)
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Struct":
        single = struct_values(graph_inputs=field.name == "input")
        if plausible:
            single = struct_values(graph_inputs=True, plausible=True) if field.name == "input" else \
                st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=10), st.integers(0, 100)), max_size=3)
    elif field.message_type is not None:
        single = message_strategy(field.message_type, seeds, depth + 1, plausible)
    elif t == field.TYPE_STRING:
        single = plausible_strings(field.name, seeds) if plausible else strings(field.name, seeds)
    elif plausible and t == field.TYPE_ENUM:
        single = st.sampled_from([v.number for v in field.enum_type.values])
    elif plausible and t in (field.TYPE_UINT32, field.TYPE_UINT64, field.TYPE_INT32, field.TYPE_INT64):
        single = st.integers(0, 60)
    elif t == field.TYPE_BYTES:
        single = st.binary(max_size=200)
    elif t == field.TYPE_BOOL:
        single = st.booleans()
    elif t in (field.TYPE_UINT32, field.TYPE_FIXED32):
        single = UINT32
    elif t in (field.TYPE_UINT64, field.TYPE_FIXED64):
        single = UINT64
    elif t in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
        single = INT32
    elif t in (field.TYPE_INT64, field.TYPE_SINT64, field.TYPE_SFIXED64):
        single = INT64
    elif t == field.TYPE_ENUM:
        single = st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), INT32)
    elif t in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        single = st.floats(allow_nan=True, allow_infinity=True, width=32 if t == field.TYPE_FLOAT else 64)
    else:
        raise AssertionError(f"no strategy for field {field.full_name} of type {t}")
    if field.is_repeated:
        return st.lists(single, max_size=5)
    return single


def _build(cls, descriptor, values: dict):
    msg = cls()
    for name, value in values.items():
        f = descriptor.fields_by_name[name]
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            getattr(msg, name).update(value)
        elif f.message_type is not None and f.message_type.full_name == "google.protobuf.Struct":
            _fill_struct(getattr(msg, name), value)
        elif f.message_type is not None:
            if f.is_repeated:
                getattr(msg, name).extend(value)
            else:
                getattr(msg, name).CopyFrom(value)
        elif f.is_repeated:
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


def _plausible_input(graph: str) -> st.SearchStrategy[dict]:
    return {
        "tiny": st.fixed_dictionaries({"text": st.text(max_size=40)}),
        "research_assistant": st.fixed_dictionaries({"question": st.text(min_size=1, max_size=40)}),
        "parallel_review": st.fixed_dictionaries({"request": st.text(max_size=20)},
                                                 optional={"amount": st.floats(0, 1000)}),
    }.get(graph, st.fixed_dictionaries({"action": st.sampled_from(["refund", "deploy"]), "target": st.text(max_size=10)},
                                       optional={"amount": st.floats(0, 1000), "reason": st.text(max_size=10)}))


def message_strategy(descriptor, seeds, depth: int = 0, plausible: bool = False) -> st.SearchStrategy:
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    fields = {f.name: field_strategy(f, seeds, depth, plausible) for f in descriptor.fields}
    if plausible and {"graph", "input"} <= set(fields) and seeds.get("graph"):
        # A run request: the input of the graph it names, most fields set.
        required = {name: fields[name] for name in ("input", "graph")}
        optional = {name: strategy for name, strategy in fields.items() if name not in required}
        return st.sampled_from(seeds["graph"]).flatmap(lambda graph: st.fixed_dictionaries(
            {"graph": st.just(graph), "input": _plausible_input(graph)}, optional=optional)).map(
            lambda values: _build(cls, descriptor, values))

    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, descriptor, values))


PRINCIPALS = st.one_of(st.just([]), st.builds(lambda n: [("gm-principal", n)], st.one_of(
    st.sampled_from(["alice", "", "admin", "x" * 2000]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40))))


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def raw_bodies(path: str) -> st.SearchStrategy[bytes]:
    """Wire format built by hand over the request's field numbers (any wire type, any
    64-bit varint incl. negative ones for unsigned fields), and plain garbage."""
    numbers = [f.number for f in RPCS[path].input_type.fields] or [1]
    field_no = st.one_of(st.sampled_from(numbers), st.integers(1, 2 ** 29 - 1))
    one = st.one_of(
        st.builds(lambda f, v: _varint(f << 3) + _varint(v), field_no, st.integers(-(2 ** 63), 2 ** 64 - 1)),
        st.builds(lambda f, b: _varint(f << 3 | 2) + _varint(len(b)) + b, field_no,
                  st.one_of(st.binary(max_size=80), st.text(max_size=40).map(str.encode))),
        st.builds(lambda f, b: _varint(f << 3 | 5) + b, field_no, st.binary(min_size=4, max_size=4)),
        st.builds(lambda f, b: _varint(f << 3 | 1) + b, field_no, st.binary(min_size=8, max_size=8)),
    )
    return st.one_of(st.lists(one, max_size=6).map(b"".join), st.binary(max_size=400))


def _classify(target, path: str, code, details: str, what: str, bad: list[str]) -> None:
    bad.append(f"  {code.name} {details[:120]!r} {target.cause(details)} <- {what}")


def _report(bad: list[str], path: str) -> str:
    return f"{len(bad)} calls of {path} ended in INTERNAL/UNKNOWN:\n" + "\n".join(bad[:15])


def _short(message) -> str:
    text = repr(message) if isinstance(message, bytes) else str(message).replace("\n", " ")
    return text[:300] + ("..." if len(text) > 300 else "")


# -- the properties ------------------------------------------------------------------------

@pytest.mark.parametrize("path", MESSAGE_METHODS)
def test_fuzz_messages(target, path):
    """Generated requests of the method's own type: never INTERNAL or UNKNOWN."""
    bad: list[str] = []
    streaming = RPCS[path].server_streaming

    @settings(max_examples=STREAM_EXAMPLES if streaming else EXAMPLES, **FUZZ_SETTINGS)
    @given(request=st.one_of(message_strategy(RPCS[path].input_type, target.seeds),
                             message_strategy(RPCS[path].input_type, target.seeds, plausible=True)),
           metadata=PRINCIPALS)
    def fuzz(request, metadata):
        code, gm_code, details = target.call(path, request.SerializeToString(), metadata)
        if _is_bad(code, details):
            _classify(target, path, code, details, f"{_short(request)} {metadata and metadata[0][1][:20]}", bad)

    fuzz()
    assert not bad, _report(bad, path)


@pytest.mark.parametrize("path", sorted(RPCS))
def test_fuzz_raw_bytes(target, path):
    """Raw bodies through a generic channel: never INTERNAL or UNKNOWN (a body that does
    not parse is INVALID_ARGUMENT), and Drain gets nothing that parses."""
    bad: list[str] = []
    only_malformed = path in NEVER_VALID

    @settings(max_examples=RAW_EXAMPLES, **FUZZ_SETTINGS)
    @given(body=raw_bodies(path))
    @example(body=b"")
    @example(body=b"\x0f")
    def fuzz(body):
        if only_malformed and _parses(path, body):
            body = b"\x0f" + body  # wire type 7: cannot parse, whatever follows
        assert not (only_malformed and _parses(path, body))
        code, gm_code, details = target.call(path, body)
        if _is_bad(code, details):
            _classify(target, path, code, details, repr(body[:80]), bad)

    fuzz()
    assert not bad, _report(bad, path)
    if only_malformed:
        status = worker_service_pb2.GetWorkerStatusResponse.FromString(
            target.channel_for("WorkerService").unary_unary("/graphmesh.v1.WorkerService/GetWorkerStatus")(
                b"", timeout=10))
        assert not status.draining


def _text(value: str) -> struct_pb2.Struct:
    return struct_pb2.Struct(fields={"text": struct_pb2.Value(string_value=value)})


def _known(case: str, path: str, message):
    """A request that once ended in INTERNAL (found by this fuzzing), kept as a regression test."""
    return pytest.param(path, message, id=f"{path.split('/')[1]}-{case}")


KNOWN_CASES = [
    _known("nul", "RunService/ListRuns", run_service_pb2.ListRunsRequest(graph="a\x00b")),
    _known("nul", "RunService/GetThreadState", run_service_pb2.GetThreadStateRequest(thread_id="a\x00b")),
    _known("nul", "ReviewService/ListApprovals", rpb.ListApprovalsRequest(graph="\x00")),
    _known("nul", "AuthService/RevokeToken", auth_service_pb2.RevokeTokenRequest(token_id="a\x00b")),
    _known("nul-in-input", "RunService/CreateRun", run_service_pb2.CreateRunRequest(
        graph="tiny", input=struct_pb2.Struct(fields={"text": struct_pb2.Value(string_value="a\x00b")}))),
    _known("nan", "RunService/CreateRun", run_service_pb2.CreateRunRequest(graph="tiny", input=struct_pb2.Struct(
        fields={"text": struct_pb2.Value(number_value=math.nan)}))),
    _known("infinity", "ReviewService/Decide", rpb.DecideRequest(
        approval_id=U, kind=rpb.DECISION_KIND_EDIT,
        edited_value=struct_pb2.Struct(fields={"amount": struct_pb2.Value(number_value=math.inf)}))),
    _known("huge-id", "RunService/GetRun", run_service_pb2.GetRunRequest(run_id="y" * 70_000)),
    _known("huge-graph", "RunService/CreateRun", run_service_pb2.CreateRunRequest(graph="y" * 70_000)),
    _known("huge-id", "ReviewService/GetApproval", rpb.GetApprovalRequest(approval_id="y" * 70_000)),
    _known("deep-page-token", "RunService/ListRuns", run_service_pb2.ListRunsRequest(page_token=_b64(_deep_json(50_000)))),
    _known("deep-page-token", "ReviewService/ListApprovals", rpb.ListApprovalsRequest(page_token=_b64(_deep_json(50_000)))),
]


@pytest.mark.parametrize("path, request_message", KNOWN_CASES)
def test_known_cases(target, path, request_message):
    code, gm_code, details = target.call(path, request_message.SerializeToString())
    assert not _is_bad(code, details), f"{path} {_short(request_message)}: {code.name} {details} {target.cause(details)}"
    assert code == grpc.StatusCode.INVALID_ARGUMENT or code == grpc.StatusCode.NOT_FOUND, (code, details)


MALFORMED = [b"\x00", b"\x0f", b"\x0a\x05ab", b"\xff" * 11]


def test_malformed_request_is_invalid_argument(target):
    wrong = []
    deep = run_service_pb2.CreateRunRequest(graph="tiny")
    deep.input.update(_nested(120))
    cases = [(path, body) for path in sorted(RPCS) for body in MALFORMED]
    cases.append(("RunService/CreateRun", deep.SerializeToString()))
    for path, body in cases:
        assert not _parses(path, body) or len(body) > 100
        code, _, details = target.call(path, body)
        if code != grpc.StatusCode.INVALID_ARGUMENT:
            wrong.append(f"{path} {body[:40]!r}: {code.name} {details[:120]}")
    assert not wrong, "\n".join(wrong)


# -- afterwards: the mesh is whole ---------------------------------------------------------

def _restore(target) -> None:
    """Puts back what fuzzed operator calls may have changed: node switches and rollouts."""
    graphs = target.client.graphs
    for g in graphs.ListGraphs(gpb.ListGraphsRequest(), timeout=10).graphs:
        for d in g.disabled_nodes:
            graphs.EnableNode(gpb.EnableNodeRequest(graph=g.name, node=d.node), timeout=10)
        weights = {v.versions.graph_version: v.weight for v in g.versions}
        if weights != target.initial_weights[g.name]:
            graphs.SetRollout(gpb.SetRolloutRequest(graph=g.name, weights=target.initial_weights[g.name],
                                                    reason="restore after fuzzing"), timeout=10)


def test_mesh_survives_fuzzing(target):
    mesh = target.mesh
    assert all(mesh.pid(name) is not None for name in mesh.service_names), "a service process died"
    service_names = {
        mesh.api_address: ["", "graphmesh.v1.RunService", "graphmesh.v1.GraphService", "graphmesh.v1.AuthService"],
        mesh.review_address: ["", "graphmesh.v1.ReviewService"],
        mesh.worker_addresses[0]: ["", "graphmesh.v1.WorkerService"],
    }
    for address, names in service_names.items():
        with grpc.insecure_channel(address) as ch:
            for name in names:
                reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (address, name)
    _restore(target)
    run = create_run(target.client, "tiny", {"text": "still standing after the fuzz"})
    done = wait_status(target.client, run.run_id, COMPLETED)
    assert done.status == COMPLETED
    sync = target.client.runs.InvokeRun(run_service_pb2.InvokeRunRequest(graph="tiny", input=struct_pb2.Struct(
        fields={"text": struct_pb2.Value(string_value="sync too")})), timeout=30)
    assert sync.run.status == COMPLETED
    status = target.channel_for("WorkerService").unary_unary("/graphmesh.v1.WorkerService/GetWorkerStatus")(
        b"", timeout=10)
    assert not worker_service_pb2.GetWorkerStatusResponse.FromString(status).draining
    # For the record: what the fuzzing got back, per method and status.
    print(json.dumps({f"{p} {c}": n for (p, c), n in sorted(target.outcomes.items())}, indent=0))
