"""What the review page offers for an approval: the decisions its interrupt allows (the
same rules Decide enforces) and the payload as the graph passed it."""

from __future__ import annotations

import pytest

from graphmesh.jsonvalues import to_struct
from graphmesh.resume import allowed_decisions, check_decision
from graphmesh.v1 import review_service_pb2
from services.review.web.backend import payload_of


def _human(**config) -> dict:
    flags = {"allow_accept": False, "allow_edit": False, "allow_respond": False, "allow_ignore": False, **config}
    return {"action_request": {"action": "send_email", "args": {"to": "a@example.com"}}, "config": flags,
            "description": "send it?"}


def _hitl(*allowed: list[str]) -> dict:
    names = [f"tool_{i}" for i in range(len(allowed))]
    return {"action_requests": [{"name": n, "args": {}} for n in names],
            "review_configs": [{"action_name": n, "allowed_decisions": a} for n, a in zip(names, allowed)]}


@pytest.mark.parametrize("shape, payload, kinds, needs_comment", [
    ("plain", {"question": "ok?"}, ["approve", "reject", "edit"], False),
    ("record", "ok?", ["approve", "reject", "edit"], False),
    ("human_interrupt", [_human(allow_accept=True, allow_ignore=True)], ["approve", "reject"], False),
    ("human_interrupt", [_human(allow_accept=True, allow_respond=True)], ["approve", "reject"], True),
    ("human_interrupt", [_human(allow_edit=True)], ["edit"], False),
    ("human_interrupt", [_human(allow_accept=True), _human(allow_accept=True, allow_edit=True)], ["approve"], False),
    ("hitl", _hitl(["approve", "reject"]), ["approve", "reject"], False),
    ("hitl", _hitl(["approve", "edit"], ["approve"]), ["approve", "edit"], False),
    ("hitl", _hitl(["reject"], ["approve"]), [], False),
])
def test_allowed_decisions_are_what_decide_accepts(shape, payload, kinds, needs_comment):
    assert allowed_decisions(shape, payload) == (kinds, needs_comment)
    for kind in {"approve", "reject"} - set(kinds):  # what is not offered is refused by the server too
        with pytest.raises(Exception):
            check_decision(shape, payload, kind, None, comment="a reason")


def test_the_payload_is_shown_as_the_graph_passed_it():
    def approval(value):
        return review_service_pb2.Approval(payload=to_struct(value))
    interrupts = [_human(allow_accept=True)]
    assert payload_of(approval(interrupts)) == interrupts  # a list travels as {"value": [...]}
    assert payload_of(approval("plain text")) == "plain text"
    assert payload_of(approval({"amount": 3, "to": "x"})) == {"amount": 3, "to": "x"}
    assert payload_of(approval({"value": {"nested": True}})) == {"value": {"nested": True}}
