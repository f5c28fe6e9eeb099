"""research_assistant v2: plan -> retrieve -> rank -> summarize -> write_report.

Same input schema as v1 (graphs/research.py) and the same final keys (`report`,
`sources`, `summary`), so clients see the same output. Changes from v1, which
checkpoints written by v1 must be migrated across (state_schema_version 1 -> 2):

- node renamed:    `search`  -> `retrieve` (a v1 thread paused before `search`
                   must resume before `retrieve`).
- field renamed:   `results` -> `documents`; `rank` reads `documents`.
- reducer changed: v1's `results` was a plain overwrite (last write wins);
                   v2's `documents` is `Annotated[list[dict], operator.add]`, so
                   every write is appended to what the thread already holds. A
                   second run on the same thread therefore accumulates documents
                   instead of replacing them, and `rank` de-duplicates by id. A
                   migrated v1 `results` list becomes the initial `documents`.

Progress events report the stage `retrieve` where v1 reported `search`; the
other nodes (plan, summarize, write_report, with its optional review, which resumes
with the decision record: `resume: record` in the manifest) and the corpus are v1's own.

The manifest declares the migration from state schema 1 (graphmesh/examples.yaml):
rename_fields results -> documents, rename_nodes search -> retrieve.
"""

from __future__ import annotations

import operator
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from graphs.research import (
    ResearchInput,
    TransientSearchError,
    _pause,
    plan,
    search_corpus,
    summarize,
    write_report,
)

__all__ = ["STAGES", "ResearchInput", "ResearchStateV2", "graph", "plan", "retrieve", "rank", "summarize",
           "write_report"]

# Same length and positions as v1's STAGES, so v1's plan/summarize/write_report
# report the same progress fractions here.
STAGES = ("plan", "retrieve", "rank", "summarize", "write_report")
_attempts: dict[tuple[str, str], int] = {}  # (thread, question) -> failed retrieve attempts so far


class ResearchStateV2(ResearchInput, total=False):
    queries: list[str]
    documents: Annotated[list[dict], operator.add]  # appended to, not overwritten (v1: `results`, overwrite)
    ranked: list[dict]
    summary: str
    report: str
    sources: list[str]
    reviewed_by: str


def _progress(stage: str, done: float, **extra) -> None:
    base = STAGES.index(stage) / len(STAGES)
    get_stream_writer()({"stage": stage, "progress": round(base + done / len(STAGES), 3), **extra})


async def retrieve(state: ResearchStateV2, config: RunnableConfig) -> dict:
    key = (str(config.get("configurable", {}).get("thread_id", "")), state["question"])
    if _attempts.get(key, 0) < int(state.get("fail_first_attempts", 0)):
        _attempts[key] = _attempts.get(key, 0) + 1
        raise TransientSearchError(f"retrieval backend timed out (attempt {_attempts[key]})")
    _attempts.pop(key, None)
    documents: list[dict] = []
    queries = state.get("queries") or []
    for i, q in enumerate(queries):
        await _pause(state, 1 / max(len(queries), 1))
        hits = [h for h in search_corpus(q) if h["id"] not in {d["id"] for d in documents}]
        documents.extend(hits)
        _progress("retrieve", (i + 1) / len(queries), query=q, hits=len(hits))
    if not queries:
        await _pause(state)
    return {"documents": documents}  # the reducer appends this to the thread's documents


async def rank(state: ResearchStateV2) -> dict:
    terms = set(state.get("queries") or [])

    def score(doc: dict) -> int:
        text = f"{doc['title']} {doc['snippet']}".lower()
        return sum(t in text for t in terms)

    # `documents` accumulates (operator.add), so the same document may appear twice.
    unique = list({d["id"]: d for d in state.get("documents") or []}.values())
    ranked = sorted(unique, key=lambda d: (-score(d), d["id"]))
    ranked = ranked[: max(int(state.get("max_results", 3)), 1)]
    await _pause(state)
    _progress("rank", 1.0, kept=len(ranked))
    return {"ranked": ranked}


graph = StateGraph(ResearchStateV2, input_schema=ResearchInput)
for _name, _fn in zip(STAGES, (plan, retrieve, rank, summarize, write_report)):
    # input_schema explicitly: v1's nodes are annotated with v1's ResearchState, and
    # LangGraph would otherwise add v1's channels (`results`) to this graph.
    graph.add_node(_name, _fn, input_schema=ResearchStateV2)
graph.add_edge(START, "plan")
for _a, _b in zip(STAGES, STAGES[1:]):
    graph.add_edge(_a, _b)
graph.add_edge("write_report", END)
