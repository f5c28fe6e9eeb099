"""Redacting a `messages` stream, whose secrets arrive split across token chunks.

A model that echoes a secret streams it in pieces ("sk-", "12ab", ...): redacting each
chunk alone never matches it. Per message (chunks of one reply share their id) the text is
redacted as one string instead: each chunk releases only the text that can no longer
become part of a match, and holds back the rest (at most the longest secret form, less one
character) until more text comes or the message ends. What the chunks of a message release,
joined, is exactly `secrets.redact(full text)`.

A message ends with its last chunk (chunk_position "last", or a finish_reason/stop_reason
in its response_metadata), when the task that streamed it finishes, or when the run's
events are flushed before a status change; what is still held then goes out, redacted, in
one more chunk of the same message.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from graphmesh import secrets

_STR = "content"  # the key of a message's string content among its held texts


@dataclass
class _Held:
    namespace: tuple[str, ...]
    last: list  # the message's latest chunk, [message_dict, metadata]: the shape of a tail chunk
    texts: dict[Any, str] = field(default_factory=dict)  # "content", or a text block's index -> held text

    @property
    def task_ns(self) -> str:
        metadata = self.last[1] if len(self.last) > 1 and isinstance(self.last[1], dict) else {}
        return str(metadata.get("langgraph_checkpoint_ns") or metadata.get("checkpoint_ns") or "")


def release(pending: str, pattern: re.Pattern, longest: int) -> tuple[str, str]:
    """(what may go out now, redacted; what must wait): a match is decided by the `longest`
    characters from where it starts, so text is final up to `longest - 1` from the end,
    and a match that starts before that point is replaced whole."""
    safe = len(pending) - (longest - 1)
    out: list[str] = []
    pos = 0
    for match in pattern.finditer(pending):
        if match.start() >= safe:
            break
        out += [pending[pos:match.start()], secrets.REDACTED]
        pos = match.end()
    cut = max(pos, safe)
    out.append(pending[pos:cut])
    return "".join(out), pending[cut:]


def _is_streamed(message: Any) -> bool:
    return (isinstance(message, dict) and isinstance(message.get("id"), str) and message["id"] != ""
            and str(message.get("type", "")).endswith("Chunk"))


def _ends(message: dict) -> bool:
    metadata = message.get("response_metadata") or {}
    return message.get("chunk_position") == "last" or bool(
        isinstance(metadata, dict) and (metadata.get("finish_reason") or metadata.get("stop_reason")))


class MessageStreamRedactor:
    """Holds back the possibly secret tails of the messages of one run's `messages` stream."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, namespace: Sequence[str], data: Any) -> list[tuple[tuple[str, ...], Any]]:
        """The (namespace, data) chunks to emit for one JSON `messages` chunk [message, metadata]."""
        pattern, longest = secrets.redaction_span()
        message = data[0] if isinstance(data, list) and data else None
        if pattern is None or not _is_streamed(message):
            return [(tuple(namespace), data)]  # a whole message: redacted as it is
        held = self._held.get(message["id"])
        if held is None:
            held = _Held(tuple(namespace), data)
        held.last = data
        content = message.get("content")
        if isinstance(content, str):
            message["content"], held.texts[_STR] = release(held.texts.get(_STR, "") + content, pattern, longest)
        elif isinstance(content, list):
            for position, block in enumerate(content):
                if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                    key = block.get("index", position)
                    block["text"], held.texts[key] = release(held.texts.get(key, "") + block["text"], pattern, longest)
        if _ends(message):
            self._held.pop(message["id"], None)
            self._append_tails(message, held.texts)
        elif any(held.texts.values()):
            self._held[message["id"]] = held
        else:
            self._held.pop(message["id"], None)
        return [(tuple(namespace), data)]

    def finish_task(self, task_id: str) -> list[tuple[tuple[str, ...], Any]]:
        """The tails of the messages a finished task streamed (its id is in their checkpoint_ns)."""
        if not task_id:
            return []
        return self._finish([mid for mid, held in self._held.items() if task_id in held.task_ns])

    def finish_all(self) -> list[tuple[tuple[str, ...], Any]]:
        return self._finish(list(self._held))

    def _finish(self, message_ids: list[str]) -> list[tuple[tuple[str, ...], Any]]:
        out = []
        for message_id in message_ids:
            held = self._held.pop(message_id)
            message, *rest = copy.deepcopy(held.last)
            # The tail alone: nothing a client adds up when it merges the chunks is repeated.
            message.update(content="" if _STR in held.texts else [], tool_call_chunks=[], tool_calls=[],
                           invalid_tool_calls=[], usage_metadata=None, response_metadata={}, chunk_position="last")
            self._append_tails(message, held.texts)
            out.append((held.namespace, [message, *rest]))
        return out

    @staticmethod
    def _append_tails(message: dict, texts: dict[Any, str]) -> None:
        """Puts each held text, redacted, at the end of the message chunk's content."""
        for key, tail in texts.items():
            if not tail:
                continue
            tail = secrets.redact(tail)
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = content + tail
            elif isinstance(content, list):
                block = next((b for b in content if isinstance(b, dict) and b.get("type") == "text"
                              and b.get("index") == key and isinstance(b.get("text"), str)), None)
                if block is not None:
                    block["text"] += tail
                else:
                    content.append({"type": "text", "text": tail, **({} if key == _STR else {"index": key})})
            else:
                message["content"] = tail
