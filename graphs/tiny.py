"""tiny: three pure, fast nodes in a line. Sync-eligible; also the benchmark graph.

Input: {"text": str}. Output adds normalized, word_count, char_count, summary.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12


class TinyInput(TypedDict):
    text: str


class TinyState(TinyInput, total=False):
    normalized: str
    word_count: int
    char_count: int
    summary: str


def normalize(state: TinyState) -> dict:
    return {"normalized": " ".join(state["text"].split()).lower()}


def count(state: TinyState) -> dict:
    text = state["normalized"]
    return {"word_count": len(text.split()), "char_count": len(text)}


def summarize(state: TinyState) -> dict:
    words = state["normalized"].split()
    head = " ".join(words[:5]) + (" ..." if len(words) > 5 else "")
    return {"summary": f"{state['word_count']} words: {head}".rstrip(": ")}


graph = StateGraph(TinyState, input_schema=TinyInput)
graph.add_node("normalize", normalize)
graph.add_node("count", count)
graph.add_node("summarize", summarize)
graph.add_edge(START, "normalize")
graph.add_edge("normalize", "count")
graph.add_edge("count", "summarize")
graph.add_edge("summarize", END)
