"""graphmesh/resume.py canonical_decision: a resume value a LangGraph client wrote itself maps
to APPROVE / REJECT / EDIT only when that decision's resume value equals it exactly (so the
graph receives what the client sent) and the interrupt allows the decision; anything else
stays a RESPOND (None). And is_canonical: which decisions a run's owner may send."""

from __future__ import annotations

import pytest

from graphmesh.errors import InvalidArgument
from graphmesh.jsonvalues import same_json
from graphmesh.resume import canonical_decision, check_decision, is_canonical, record_request, resume_value

PLAIN = {"question": "send the email?"}
HUMAN = {"action_request": {"action": "send_email", "args": {"to": "ops@example.com"}},
         "config": {"allow_ignore": True, "allow_respond": True, "allow_edit": True, "allow_accept": True},
         "description": "Send this email?"}
HITL = {"action_requests": [{"name": "send_email", "args": {"to": "ops@example.com"}}],
        "review_configs": [{"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"]}]}
HITL_TWO = {"action_requests": [{"name": "send_email", "args": {"to": "a"}}, {"name": "delete_file", "args": {}}],
            "review_configs": [{"action_name": "send_email", "allowed_decisions": ["approve", "reject"]},
                               {"action_name": "delete_file", "allowed_decisions": ["approve", "reject"]}]}
EDITED = {"action": "send_email", "args": {"to": "cfo@example.com"}}
NOTE = "resumed through the LangGraph HTTP API"


def human(**config):
    return {**HUMAN, "config": {**HUMAN["config"], **config}}


@pytest.mark.parametrize("shape, payload, value, expected", [
    # plain: true / false only
    ("plain", PLAIN, True, ("approve", None, "")),
    ("plain", PLAIN, False, ("reject", None, "")),
    ("plain", PLAIN, 1, None),  # truthy is not true
    ("plain", PLAIN, 0, None),
    ("plain", PLAIN, "yes", None),
    ("plain", PLAIN, {"to": "x"}, None),  # an edit is the value's shape too, but not a yes or no
    ("plain", PLAIN, None, None),
    # human_interrupt: one HumanResponse per request, exactly as the table writes it
    ("human_interrupt", [HUMAN], [{"type": "accept", "args": None}], ("approve", None, "")),
    ("human_interrupt", [HUMAN], [{"type": "accept"}], None),  # no args key: not the table's value
    ("human_interrupt", [HUMAN], [{"type": "accept", "args": EDITED}], None),  # agent-inbox's accept
    ("human_interrupt", [HUMAN], [{"type": "ignore", "args": None}], ("reject", None, "")),
    ("human_interrupt", [HUMAN], [{"type": "edit", "args": EDITED}], ("edit", EDITED, "")),
    ("human_interrupt", [HUMAN], [{"type": "edit", "args": {"to": "x"}}], None),  # new args alone: not an ActionRequest
    ("human_interrupt", [HUMAN], [{"type": "response", "args": "not today"}], ("reject", None, "not today")),
    ("human_interrupt", [HUMAN], [{"type": "response", "args": ""}], None),
    ("human_interrupt", HUMAN, [{"type": "accept", "args": None}], ("approve", None, "")),  # a single request
    ("human_interrupt", [HUMAN, HUMAN], [{"type": "accept", "args": None}] * 2, ("approve", None, "")),
    ("human_interrupt", [HUMAN, HUMAN], [{"type": "accept", "args": None}], None),  # one answer for two
    ("human_interrupt", [HUMAN, HUMAN], [{"type": "edit", "args": EDITED}] * 2, None),  # an edit answers one
    ("human_interrupt", [HUMAN], {"type": "accept", "args": None}, None),  # not a list
    # ... and only decisions the request allows
    ("human_interrupt", [human(allow_accept=False)], [{"type": "accept", "args": None}], None),
    ("human_interrupt", [human(allow_edit=False)], [{"type": "edit", "args": EDITED}], None),
    ("human_interrupt", [human(allow_ignore=False)], [{"type": "ignore", "args": None}], None),
    ("human_interrupt", [human(allow_respond=False)], [{"type": "response", "args": "no"}], None),
    # hitl: approves, or rejects (with one message or none)
    ("hitl", HITL, {"decisions": [{"type": "approve"}]}, ("approve", None, "")),
    ("hitl", HITL_TWO, {"decisions": [{"type": "approve"}, {"type": "approve"}]}, ("approve", None, "")),
    ("hitl", HITL_TWO, {"decisions": [{"type": "approve"}, {"type": "reject"}]}, None),  # mixed
    ("hitl", HITL, {"decisions": [{"type": "reject"}]}, ("reject", None, "")),
    ("hitl", HITL, {"decisions": [{"type": "reject", "message": "too broad"}]}, ("reject", None, "too broad")),
    ("hitl", HITL, {"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {}}}]}, None),
    ("hitl", HITL, {"decisions": [{"type": "approve", "note": "x"}]}, None),
    ("hitl", HITL, {"decisions": []}, None),
    # record: the record is graphmesh's, never a client's; a client names the decision instead
    ("record", PLAIN, True, None),
    ("record", PLAIN, {"approved": True, "decision": "approve", "edited_value": None, "comment": "",
                       "reviewer": "", "expired": False}, None),
    ("record", PLAIN, {"decision": "approve", "reviewer": "ceo"}, None),  # nothing else than the three keys
    ("record", PLAIN, {"decision": "approve"}, ("approve", None, "")),
    ("record", PLAIN, {"decision": "reject", "comment": "not today"}, ("reject", None, "not today")),
    ("record", PLAIN, {"decision": "edit", "edited_value": {"to": "x"}}, ("edit", {"to": "x"}, "")),
    ("record", PLAIN, {"decision": "edit"}, None),  # an edit needs its object
    ("record", PLAIN, {"decision": "edit", "edited_value": "x"}, None),
    ("record", PLAIN, {"decision": "approve", "edited_value": {"to": "x"}}, None),
    ("record", PLAIN, {"decision": "approve", "comment": 3}, None),
    ("record", PLAIN, {"decision": "expire"}, None),
    ("record", PLAIN, {"decision": "respond"}, None),
])
def test_canonical_decision(shape, payload, value, expected):
    assert canonical_decision(shape, payload, value) == expected


@pytest.mark.parametrize("shape, payload, value", [
    ("plain", PLAIN, True), ("plain", PLAIN, False),
    ("human_interrupt", [HUMAN], [{"type": "accept", "args": None}]),
    ("human_interrupt", [HUMAN], [{"type": "ignore", "args": None}]),
    ("human_interrupt", [HUMAN], [{"type": "edit", "args": EDITED}]),
    ("human_interrupt", [HUMAN], [{"type": "response", "args": "not today"}]),
    ("hitl", HITL, {"decisions": [{"type": "approve"}]}),
    ("hitl", HITL, {"decisions": [{"type": "reject", "message": "too broad"}]}),
])
def test_the_graph_receives_exactly_the_value_sent(shape, payload, value):
    """The rule itself: the mapped decision, recorded with the note where the value leaves
    the comment free, resumes with the client's value."""
    kind, edited, comment = canonical_decision(shape, payload, value, note=NOTE)
    status = {"approve": "APPROVED", "reject": "REJECTED", "edit": "EDITED"}[kind]
    resumed = resume_value(shape, payload, status=status, decision_kind=kind, edited_value=edited,
                           comment=comment, reviewer="rita")
    assert same_json(resumed, value)


def test_the_note_is_kept_only_where_the_value_leaves_the_comment_free():
    assert canonical_decision("plain", PLAIN, True, note=NOTE) == ("approve", None, NOTE)
    assert canonical_decision("plain", PLAIN, False, note=NOTE) == ("reject", None, NOTE)  # still False
    # An ignore with a comment would be a response (the request allows respond): no note.
    assert canonical_decision("human_interrupt", [HUMAN], [{"type": "ignore", "args": None}], note=NOTE) == \
        ("reject", None, "")
    # Where respond is not allowed, the comment does not reach the value: the note is kept.
    assert canonical_decision("human_interrupt", [human(allow_respond=False)], [{"type": "ignore", "args": None}],
                              note=NOTE) == ("reject", None, NOTE)
    assert canonical_decision("hitl", HITL, {"decisions": [{"type": "reject"}]}, note=NOTE) == ("reject", None, "")
    assert canonical_decision("human_interrupt", [HUMAN], [{"type": "response", "args": "no"}], note=NOTE) == \
        ("reject", None, "no")


@pytest.mark.parametrize("shape, payload, kind, edited, comment, expected", [
    ("plain", PLAIN, "respond", None, "", True),
    ("record", PLAIN, "respond", None, "", True),
    ("plain", PLAIN, "approve", None, NOTE, True),
    ("plain", PLAIN, "reject", None, "", True),
    ("plain", PLAIN, "edit", {"to": "x"}, "", False),  # a plain edit stands for no client's value
    ("record", PLAIN, "approve", None, "", True),  # the record then names the owner as its reviewer
    ("record", PLAIN, "reject", None, "no", True),
    ("record", PLAIN, "edit", {"to": "x"}, "", True),
    ("human_interrupt", [HUMAN], "approve", None, "", True),
    ("human_interrupt", [HUMAN], "reject", None, "not today", True),
    ("human_interrupt", [HUMAN], "edit", EDITED, "", True),
    ("human_interrupt", [HUMAN], "edit", {"to": "x"}, "", True),  # the same value as the ActionRequest's
    ("human_interrupt", [human(allow_accept=False)], "approve", None, "", False),
    ("hitl", HITL, "approve", None, "", True),
    ("hitl", HITL, "edit", {"name": "send_email", "args": {}}, "", False),
    ("plain", PLAIN, "expire", None, "", False),
])
def test_is_canonical(shape, payload, kind, edited, comment, expected):
    assert is_canonical(shape, payload, kind, edited, comment) is expected


def test_same_json():
    assert same_json({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not same_json(True, 1) and not same_json(0, False) and not same_json(None, False)
    assert not same_json({"a": 1}, {"a": 1, "b": None}) and not same_json([1], [1, 1])


def test_a_record_is_decided_never_written_by_its_caller():
    """RESPOND would let the caller write the record the graph trusts (its reviewer); a
    client's {"decision", ...} resumes with graphmesh's record of that decision instead."""
    with pytest.raises(InvalidArgument) as refused:
        check_decision("record", PLAIN, "respond", {"approved": True, "reviewer": "ceo"})
    assert refused.value.code == "RESPOND_NOT_FOR_RECORD"
    check_decision("plain", PLAIN, "respond", {"approved": True, "reviewer": "ceo"})  # other shapes: as given
    assert canonical_decision("record", PLAIN, {"decision": "approve"}, note=NOTE) == ("approve", None, NOTE)
    kind, edited, comment = canonical_decision("record", PLAIN, {"decision": "edit", "edited_value": {"to": "x"},
                                                                 "comment": "cc me"})
    record = resume_value("record", PLAIN, status="EDITED", decision_kind=kind, edited_value=edited,
                          comment=comment, reviewer="rita")
    assert record == {"approved": True, "decision": "edit", "edited_value": {"to": "x"}, "comment": "cc me",
                      "reviewer": "rita", "expired": False}
    assert canonical_decision("record", PLAIN, record_request("reject", None, "no")) == ("reject", None, "no")
