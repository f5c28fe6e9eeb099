"""A secret a model streams in pieces ("messages" mode token chunks) is redacted across the
chunks of its message (graphmesh/execution/stream_redaction.py, EventSink.emit_chunk)."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from google.protobuf import json_format
from langchain_core.messages import AIMessageChunk

from graphmesh import secrets
from graphmesh.execution import sink as sink_module
from graphmesh.execution.sink import EventSink
from graphmesh.execution.stream_redaction import MessageStreamRedactor
from graphmesh.jsonvalues import jsonable
from graphmesh.v1 import run_pb2

SECRET = "sk-7f3a9c21e4"
OTHER = "pw-longer-secret-0042"


@pytest.fixture
def known():
    secrets._reset_for_tests()
    secrets.remember(SECRET)
    yield
    secrets._reset_for_tests()


def chunk(text, message_id="m1", *, last=False, task="t1", **fields):
    message = AIMessageChunk(content=text, id=message_id, chunk_position="last" if last else None, **fields)
    return jsonable((message, {"langgraph_node": "chat", "langgraph_checkpoint_ns": f"chat:{task}"}))


def stream(redactor, pieces, message_id="m1", *, last=True):
    """Feeds the pieces as one message; the content each emitted chunk carries."""
    out = []
    for i, piece in enumerate(pieces):
        emitted = redactor.feed((), chunk(piece, message_id, last=last and i == len(pieces) - 1))
        out += [data[0]["content"] for _, data in emitted]
    return out


def splits(text, parts):
    for cuts in itertools.combinations(range(1, len(text)), parts - 1):
        bounds = (0, *cuts, len(text))
        yield [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("parts", [2, 3])
def test_a_secret_split_anywhere_into_few_tokens_is_never_emitted(known, parts):
    text = f"key {SECRET}!"
    for pieces in splits(text, parts):
        out = stream(MessageStreamRedactor(), pieces)
        assert "".join(out) == "key ***!", pieces
        assert len(out) == len(pieces)  # one chunk out per chunk in


def test_a_secret_split_into_many_tokens_is_never_emitted(known):
    secrets.remember(OTHER)
    text = f"use {SECRET} then {OTHER}{SECRET} and {SECRET[:-1]} end"
    rng = random.Random(18)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(3, len(text) - 1)))
        pieces = [text[a:b] for a, b in zip((0, *cuts), (*cuts, len(text)))]
        out = stream(MessageStreamRedactor(), pieces)
        assert "".join(out) == secrets.redact(text) == f"use *** then ****** and {SECRET[:-1]} end"


def test_text_without_secrets_is_held_back_at_most_the_longest_secret_less_one(known):
    text = "a reply with no secret in it at all, token by token"
    _, longest = secrets.redaction_span()
    redactor, released, fed = MessageStreamRedactor(), "", ""
    for token in text:
        fed += token
        released += stream(redactor, [token], last=False)[0]
        assert fed.startswith(released) and len(fed) - len(released) <= longest - 1
    assert released == text[:len(text) - (longest - 1)]


def test_the_last_chunk_or_a_finish_reason_releases_the_held_tail(known):
    assert "".join(stream(MessageStreamRedactor(), ["ab", SECRET[:5]])) == "ab" + SECRET[:5]
    redactor = MessageStreamRedactor()
    assert stream(redactor, ["x", SECRET[:4]], last=False) == ["", ""]  # shorter than a secret: all held
    (_, data), = redactor.feed((), chunk(SECRET[4:], response_metadata={"finish_reason": "stop"}))
    assert data[0]["content"] == "x***" and not redactor.holding
    assert data[0]["id"] == "m1" and data[0]["type"] == "AIMessageChunk" and data[1]["langgraph_node"] == "chat"


def test_messages_interleaved_by_id_are_redacted_apart(known):
    first, second = f"one {SECRET} two", f"three {SECRET}"
    redactor, out = MessageStreamRedactor(), {"a": "", "b": ""}
    pieces = {"a": list(first), "b": list(second)}
    for i in range(max(map(len, pieces.values()))):
        for message_id, tokens in pieces.items():
            if i < len(tokens):
                for _, data in redactor.feed((), chunk(tokens[i], message_id, last=i == len(tokens) - 1)):
                    assert data[0]["id"] == message_id
                    out[message_id] += data[0]["content"]
    assert out == {"a": "one *** two", "b": "three ***"} and not redactor.holding


def test_content_blocks_are_redacted_per_block(known):
    redactor, out = MessageStreamRedactor(), []
    for i, piece in enumerate([SECRET[:3], SECRET[3:8], SECRET[8:] + " ok"]):
        blocks = [{"type": "text", "text": piece, "index": 0}]
        for _, data in redactor.feed((), chunk(blocks, last=i == 2)):
            out += [b["text"] for b in data[0]["content"]]
    assert "".join(out) == "*** ok"


def test_a_finished_task_or_the_end_of_the_run_releases_what_is_held(known):
    redactor = MessageStreamRedactor()
    stream(redactor, ["hi ", SECRET[:6]], "m1", last=False)
    stream(redactor, ["yo ", SECRET[:6]], "m2", last=False)
    redactor.feed((), chunk("zz", "m3", task="t2"))
    assert redactor.finish_task("t-other") == []
    (_, tail), = redactor.finish_task("t2")
    assert tail[0]["id"] == "m3" and tail[0]["content"] == "zz" and tail[0]["chunk_position"] == "last"
    tails = redactor.finish_all()
    assert {data[0]["id"] for _, data in tails} == {"m1", "m2"} and not redactor.holding
    assert all(data[0]["usage_metadata"] is None and data[0]["tool_call_chunks"] == [] for _, data in tails)


def test_without_a_known_secret_chunks_pass_as_they_are():
    secrets._reset_for_tests()
    redactor = MessageStreamRedactor()
    data = chunk(SECRET[:5])
    assert redactor.feed((), data) == [((), data)] and redactor.feed((), data)[0][1] is data
    assert not redactor.holding


# -- through the event sink -------------------------------------------------------------------


@pytest.fixture
def published(monkeypatch):
    events: list[run_pb2.RunEvent] = []

    async def publish(js, event):
        events.append(event)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    monkeypatch.setattr(sink_module, "publish_event_pipelined", publish)
    return events


def _contents(events):
    out = []
    for event in events:
        if event.WhichOneof("kind") == "stream_chunk":
            out.append(json_format.MessageToDict(event.stream_chunk.data)[0]["content"])
        else:
            out.append(event.WhichOneof("kind"))
    return out


def test_the_sink_sends_a_tasks_tails_before_it_finishes_and_the_rest_on_flush(known, published):
    async def run():
        sink = EventSink(None, "r", 1)
        for piece in ["key ", SECRET[:4], SECRET[4:] + " bye"]:
            await sink.emit_chunk("messages", (), (AIMessageChunk(content=piece, id="m1"),
                                                   {"langgraph_checkpoint_ns": "chat:t1"}))
        await sink.emit_chunk("messages", (), (AIMessageChunk(content=SECRET[:7], id="m2"),
                                               {"langgraph_checkpoint_ns": "other:t2"}))
        await sink.emit(node_finished=run_pb2.NodeFinished(node="chat", task_id="t1"))
        await sink.flush()

    asyncio.run(run())
    contents = _contents(published)
    assert contents[contents.index("node_finished") - 1] == " bye"  # m1's tail, before its task's end
    assert "".join(c for c in contents if c != "node_finished") == "key *** bye" + SECRET[:7]
    assert [e.sequence for e in published] == list(range(1, len(published) + 1))
    assert contents[-1] == SECRET[:7]  # m2 (not a secret) went out on flush


def test_the_sink_without_secrets_emits_each_chunk_at_once(published):
    secrets._reset_for_tests()

    async def run():
        sink = EventSink(None, "r", 1)
        for piece in ["a", "b"]:
            await sink.emit_chunk("messages", (), (AIMessageChunk(content=piece, id="m1"), {}))

    asyncio.run(run())
    assert _contents(published) == ["a", "b"]
