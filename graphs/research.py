"""research_assistant: plan -> search -> rank -> summarize -> write_report.

No network and no model: `search` queries a small built-in corpus, so results are
deterministic. Nodes sleep to behave like a slow, streaming run (total
`delay_seconds`, default 3) and report progress through the stream writer.

Input: {"question": str, "delay_seconds"?: number, "max_results"?: int,
        "fail_first_attempts"?: int, "review"?: bool}
`fail_first_attempts` makes `search` raise a transient error that many times per
thread first, to exercise node retry policies. With `review`, `write_report` asks a
reviewer (an interrupt) to approve the summary before it publishes the report; a
rejection or an expiry publishes no report. The manifest declares `resume: record` for
`write_report` (docs/resume-values.md), so the decision record names the reviewer
(`reviewed_by`); a bare true/false is accepted too.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import Required, TypedDict

DEFAULT_DELAY_SECONDS = 3.0
STAGES = ("plan", "search", "rank", "summarize", "write_report")

CORPUS: dict[str, list[dict]] = {
    "langgraph": [
        {"id": "lg-1", "title": "LangGraph overview", "snippet": "LangGraph builds stateful agent graphs with checkpoints."},
        {"id": "lg-2", "title": "Durable execution", "snippet": "Checkpoints let a graph resume after a crash or an interrupt."},
    ],
    "grpc": [
        {"id": "grpc-1", "title": "gRPC basics", "snippet": "gRPC uses protobuf contracts and HTTP/2 streams."},
        {"id": "grpc-2", "title": "Deadlines", "snippet": "Every gRPC call should carry a deadline."},
    ],
    "postgres": [
        {"id": "pg-1", "title": "Postgres as source of truth", "snippet": "Postgres stores runs, checkpoints and audit records."},
    ],
    "nats": [
        {"id": "nats-1", "title": "JetStream work queues", "snippet": "JetStream delivers jobs at least once to pull consumers."},
    ],
    "checkpoint": [
        {"id": "lg-2", "title": "Durable execution", "snippet": "Checkpoints let a graph resume after a crash or an interrupt."},
    ],
    "approval": [
        {"id": "hitl-1", "title": "Human in the loop", "snippet": "An interrupt pauses a graph until a reviewer decides."},
    ],
}
_STOPWORDS = {"the", "and", "for", "how", "what", "why", "does", "with", "are", "is", "a", "an", "of", "to", "in"}
_attempts: dict[tuple[str, str], int] = {}  # (thread, question) -> failed search attempts so far


class TransientSearchError(ConnectionError):
    """The fake search backend 'timed out'; a ConnectionError, so retry policies retry it."""


class ResearchInput(TypedDict, total=False):
    question: Required[str]
    delay_seconds: float
    max_results: int
    fail_first_attempts: int
    review: bool


class ResearchState(ResearchInput, total=False):
    queries: list[str]
    results: list[dict]
    ranked: list[dict]
    summary: str
    report: str
    sources: list[str]
    reviewed_by: str


def search_corpus(query: str) -> list[dict]:
    """The deterministic fake search tool: exact keyword, then prefix matches."""
    q = query.lower()
    hits = list(CORPUS.get(q, []))
    for key in sorted(CORPUS):
        if key != q and (key.startswith(q) or q.startswith(key)):
            hits.extend(CORPUS[key])
    return hits


async def _pause(state: ResearchState, share: float = 1.0) -> None:
    delay = min(max(float(state.get("delay_seconds", DEFAULT_DELAY_SECONDS)), 0.0), 30.0)
    await asyncio.sleep(delay / len(STAGES) * share)


def _progress(stage: str, done: float, **extra) -> None:
    # Progress goes out as a custom stream event; it is not part of the state.
    base = STAGES.index(stage) / len(STAGES)
    get_stream_writer()({"stage": stage, "progress": round(base + done / len(STAGES), 3), **extra})


async def plan(state: ResearchState) -> dict:
    _progress("plan", 0.0, message="planning queries")
    words = re.findall(r"[a-z0-9]+", state["question"].lower())
    queries = list(dict.fromkeys(w for w in words if len(w) > 2 and w not in _STOPWORDS))[:5]
    await _pause(state)
    _progress("plan", 1.0, queries=queries)
    return {"queries": queries}


async def search(state: ResearchState, config: RunnableConfig) -> dict:
    key = (str(config.get("configurable", {}).get("thread_id", "")), state["question"])
    if _attempts.get(key, 0) < int(state.get("fail_first_attempts", 0)):
        _attempts[key] = _attempts.get(key, 0) + 1
        raise TransientSearchError(f"search backend timed out (attempt {_attempts[key]})")
    _attempts.pop(key, None)
    results: list[dict] = []
    queries = state.get("queries") or []
    for i, q in enumerate(queries):
        await _pause(state, 1 / max(len(queries), 1))
        hits = [h for h in search_corpus(q) if h["id"] not in {r["id"] for r in results}]
        results.extend(hits)
        _progress("search", (i + 1) / len(queries), query=q, hits=len(hits))
    if not queries:
        await _pause(state)
    return {"results": results}


async def rank(state: ResearchState) -> dict:
    terms = set(state.get("queries") or [])

    def score(doc: dict) -> int:
        text = f"{doc['title']} {doc['snippet']}".lower()
        return sum(t in text for t in terms)

    ranked = sorted(state.get("results") or [], key=lambda d: (-score(d), d["id"]))
    ranked = ranked[: max(int(state.get("max_results", 3)), 1)]
    await _pause(state)
    _progress("rank", 1.0, kept=len(ranked))
    return {"ranked": ranked}


async def summarize(state: ResearchState) -> dict:
    ranked = state.get("ranked") or []
    summary = " ".join(d["snippet"] for d in ranked) or "No sources matched the question."
    await _pause(state)
    _progress("summarize", 1.0)
    return {"summary": summary}


def _approved(decision: Any) -> tuple[bool, str]:
    if isinstance(decision, bool):
        return decision, ""
    if not isinstance(decision, dict) or "approved" not in decision:
        raise ValueError(f"resume value must be a decision record (declare resume: record for write_report) "
                         f"or true/false, got {decision!r}")
    return bool(decision.get("approved")), str(decision.get("reviewer", ""))


async def write_report(state: ResearchState) -> dict:
    ranked = state.get("ranked") or []
    reviewed_by = ""
    if state.get("review"):
        # Re-executed from the start on resume (LangGraph semantics): nothing above has effects.
        approved, reviewed_by = _approved(interrupt({
            "action": "publish_report", "node": "write_report", "question": state["question"],
            "summary": state["summary"], "sources": [d["id"] for d in ranked]}))
        if not approved:
            return {"report": "", "sources": [], "reviewed_by": reviewed_by}
    lines = [f"# {state['question']}", "", state["summary"], "", "Sources:"]
    lines += [f"- [{d['id']}] {d['title']}" for d in ranked] or ["- none"]
    await _pause(state)
    _progress("write_report", 1.0, message="report ready")
    return {"report": "\n".join(lines), "sources": [d["id"] for d in ranked], "reviewed_by": reviewed_by}


graph = StateGraph(ResearchState, input_schema=ResearchInput)
for _name, _fn in zip(STAGES, (plan, search, rank, summarize, write_report)):
    graph.add_node(_name, _fn)
graph.add_edge(START, "plan")
for _a, _b in zip(STAGES, STAGES[1:]):
    graph.add_edge(_a, _b)
graph.add_edge("write_report", END)
