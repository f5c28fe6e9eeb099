"""inbox: an email to send, held for agent-inbox's review as a LangGraph HumanInterrupt.

The interrupt's payload is a list of one HumanInterrupt (langgraph.prebuilt.interrupt), the
schema agent-inbox lists and answers; the HumanResponse picks the branch.

    input   {"to": "ana@example.com"}
    state   body (drafted), branch: accept | edit | response | ignore, sent_to, feedback
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt.interrupt import HumanInterrupt, HumanResponse
from langgraph.types import interrupt
from typing_extensions import TypedDict


class EmailState(TypedDict, total=False):
    to: str
    body: str
    branch: str
    sent_to: str
    feedback: str


def draft(state: EmailState) -> dict:
    return {"body": f"Hello {state['to']}"}


def review(state: EmailState) -> dict:
    request: HumanInterrupt = {
        "action_request": {"action": "send_email", "args": {"to": state["to"], "body": state["body"]}},
        "config": {"allow_ignore": True, "allow_respond": True, "allow_edit": True, "allow_accept": True},
        "description": f"Send an email to {state['to']}?",
    }
    response: HumanResponse = interrupt([request])[0]
    if response["type"] == "accept":
        return {"branch": "accept", "sent_to": state["to"]}
    if response["type"] == "edit":
        return {"branch": "edit", "sent_to": response["args"]["args"]["to"]}
    if response["type"] == "response":
        return {"branch": "response", "feedback": response["args"]}
    return {"branch": "ignore"}


graph = StateGraph(EmailState)
graph.add_node("draft", draft)
graph.add_node("review", review)
graph.add_edge(START, "draft")
graph.add_edge("draft", "review")
graph.add_edge("review", END)
