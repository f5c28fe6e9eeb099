"""graphmesh/resume.py: which shape an interrupt has, which decisions it takes, and what
interrupt() returns for each shape x decision (approve, reject, reject with a comment,
edit, expire). A reject or an expiry must never come back as something truthy-approving."""

from __future__ import annotations

import pytest

from graphmesh.errors import InvalidArgument
from graphmesh.resume import check_decision, choose_shape, detect_shape, resume_value
from graphmesh.store.records import DECISION_STATUS

PLAIN = {"question": "send the email?", "to": "ops@example.com"}
HUMAN = {"action_request": {"action": "send_email", "args": {"to": "ops@example.com"}},
         "config": {"allow_ignore": True, "allow_respond": True, "allow_edit": True, "allow_accept": True},
         "description": "Send this email?"}
HITL = {"action_requests": [{"name": "send_email", "args": {"to": "ops@example.com"}, "description": "Send?"}],
        "review_configs": [{"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"]}]}
HITL_TWO = {"action_requests": [{"name": "send_email", "args": {"to": "a"}}, {"name": "delete_file", "args": {"p": "x"}}],
            "review_configs": [{"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"]},
                               {"action_name": "delete_file", "allowed_decisions": ["approve", "reject"]}]}


def value(shape, payload, kind, *, edited=None, comment="", reviewer="rita"):
    status = DECISION_STATUS[kind]
    return resume_value(shape, payload, status=status, decision_kind=kind, edited_value=edited, comment=comment,
                        reviewer=reviewer)


def human(**config):
    return {**HUMAN, "config": {**HUMAN["config"], **config}}


# -- detection -------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, shape", [
    (PLAIN, "plain"),
    ("Approve the refund?", "plain"),
    (None, "plain"),
    ([], "plain"),
    ([{"a": 1}], "plain"),
    ({"kind": "approval", "node": "apply", "action": "refund"}, "plain"),  # an "action" key is not a HumanInterrupt
    ([HUMAN], "human_interrupt"),
    (HUMAN, "human_interrupt"),
    ([HUMAN, HUMAN], "human_interrupt"),
    ([HUMAN, PLAIN], "plain"),  # a list that is not all HumanInterrupts
    ({"action_request": {"action": "x", "args": {}}}, "plain"),  # no config
    (HITL, "hitl"),
    ({"action_requests": [], "review_configs": []}, "plain"),
    ({"action_requests": [{"args": {}}], "review_configs": []}, "plain"),  # an action without a name
])
def test_detect_shape(payload, shape):
    assert detect_shape(payload) == shape


@pytest.mark.parametrize("declared, payload, shape", [
    ("auto", [HUMAN], "human_interrupt"),
    ("auto", HITL, "hitl"),
    ("auto", PLAIN, "plain"),
    ("record", [HUMAN], "record"),
    ("plain", HITL, "plain"),
    ("human_interrupt", [HUMAN], "human_interrupt"),
    ("human_interrupt", PLAIN, "plain"),  # declared, but the payload is not one: the safe plain shape
    ("hitl", [HUMAN], "plain"),
])
def test_choose_shape(declared, payload, shape):
    assert choose_shape(declared, payload) == shape


# -- plain: LangGraph's `if interrupt(...)` pattern ---------------------------------------

def test_plain_values():
    assert value("plain", PLAIN, "approve") is True
    assert value("plain", PLAIN, "reject") is False
    assert value("plain", PLAIN, "reject", comment="no, wrong address") is False
    assert value("plain", PLAIN, "expire", comment="approval expired before a decision") is False
    assert value("plain", PLAIN, "edit", edited={"to": "sec@example.com"}) == {"to": "sec@example.com"}


def test_an_unknown_decision_kind_takes_the_reject_branch():
    got = resume_value("plain", PLAIN, status="CANCELLED", decision_kind=None, edited_value=None, comment="",
                       reviewer="")
    assert got is False


# -- record: the rich decision record ----------------------------------------------------------

def test_record_values():
    assert value("record", PLAIN, "approve", comment="ok") == {
        "approved": True, "decision": "approve", "edited_value": None, "comment": "ok", "reviewer": "rita",
        "expired": False}
    assert value("record", PLAIN, "reject", comment="no") == {
        "approved": False, "decision": "reject", "edited_value": None, "comment": "no", "reviewer": "rita",
        "expired": False}
    assert value("record", PLAIN, "edit", edited={"amount": 3}) == {
        "approved": True, "decision": "edit", "edited_value": {"amount": 3}, "comment": "", "reviewer": "rita",
        "expired": False}
    assert value("record", PLAIN, "expire", comment="expired", reviewer="system:expiry") == {
        "approved": False, "decision": "expire", "edited_value": None, "comment": "expired",
        "reviewer": "system:expiry", "expired": True}


# -- HumanInterrupt -> HumanResponse list -------------------------------------------------------

def test_human_interrupt_values():
    assert value("human_interrupt", [HUMAN], "approve") == [{"type": "accept", "args": None}]
    assert value("human_interrupt", [HUMAN], "reject") == [{"type": "ignore", "args": None}]
    assert value("human_interrupt", [HUMAN], "reject", comment="use the other address") == [
        {"type": "response", "args": "use the other address"}]
    assert value("human_interrupt", [HUMAN], "expire", comment="approval expired before a decision") == [
        {"type": "ignore", "args": None}]


def test_human_interrupt_edit_takes_args_or_a_whole_action_request():
    assert value("human_interrupt", [HUMAN], "edit", edited={"to": "sec@example.com"}) == [
        {"type": "edit", "args": {"action": "send_email", "args": {"to": "sec@example.com"}}}]
    assert value("human_interrupt", [HUMAN], "edit", edited={"action": "send_fax", "args": {"to": "1"}}) == [
        {"type": "edit", "args": {"action": "send_fax", "args": {"to": "1"}}}]


def test_human_interrupt_reject_with_a_comment_ignores_where_respond_is_not_allowed():
    assert value("human_interrupt", [human(allow_respond=False)], "reject", comment="no") == [
        {"type": "ignore", "args": None}]


def test_human_interrupt_bare_dict_and_several_requests_get_one_response_each():
    assert value("human_interrupt", HUMAN, "approve") == [{"type": "accept", "args": None}]
    assert value("human_interrupt", [HUMAN, human(allow_respond=False)], "reject", comment="no") == [
        {"type": "response", "args": "no"}, {"type": "ignore", "args": None}]


# -- HITL request -> {"decisions": [...]} -----------------------------------------------------------

def test_hitl_values():
    assert value("hitl", HITL, "approve") == {"decisions": [{"type": "approve"}]}
    assert value("hitl", HITL, "reject") == {"decisions": [{"type": "reject"}]}
    assert value("hitl", HITL, "reject", comment="wrong recipient") == {
        "decisions": [{"type": "reject", "message": "wrong recipient"}]}
    assert value("hitl", HITL, "expire", comment="approval expired before a decision") == {
        "decisions": [{"type": "reject", "message": "approval expired before a decision"}]}
    assert value("hitl", HITL_TWO, "approve") == {"decisions": [{"type": "approve"}, {"type": "approve"}]}
    assert value("hitl", HITL_TWO, "reject") == {"decisions": [{"type": "reject"}, {"type": "reject"}]}


def test_hitl_edit_takes_args_an_action_or_all_decisions():
    assert value("hitl", HITL, "edit", edited={"to": "b"}) == {
        "decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "b"}}}]}
    assert value("hitl", HITL, "edit", edited={"name": "send_fax", "args": {"to": "1"}}) == {
        "decisions": [{"type": "edit", "edited_action": {"name": "send_fax", "args": {"to": "1"}}}]}
    decisions = [{"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "b"}}},
                 {"type": "reject", "message": "keep it"}]
    assert value("hitl", HITL_TWO, "edit", edited={"decisions": decisions}) == {"decisions": decisions}


# -- no reject or expiry looks like an approval ---------------------------------------------------

@pytest.mark.parametrize("shape, payload", [("plain", PLAIN), ("human_interrupt", [HUMAN]), ("hitl", HITL),
                                            ("record", PLAIN)])
@pytest.mark.parametrize("kind, comment", [("reject", ""), ("reject", "no"), ("expire", "expired")])
def test_reject_and_expiry_never_approve(shape, payload, kind, comment):
    got = value(shape, payload, kind, comment=comment)
    if shape == "plain":
        assert got is False
    elif shape == "record":
        assert got["approved"] is False
    elif shape == "human_interrupt":
        assert got[0]["type"] in ("ignore", "response")
    else:
        assert [d["type"] for d in got["decisions"]] == ["reject"]


# -- refused decisions -----------------------------------------------------------------------------

def refused(shape, payload, kind, edited=None, comment="", code="DECISION_NOT_ALLOWED") -> str:
    with pytest.raises(InvalidArgument) as caught:
        check_decision(shape, payload, kind, edited, comment)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


@pytest.mark.parametrize("shape, payload", [("plain", PLAIN), ("record", PLAIN), ("human_interrupt", [HUMAN]),
                                            ("hitl", HITL)])
def test_everything_allowed_passes(shape, payload):
    for kind, edited, comment in [("approve", None, ""), ("reject", None, ""), ("reject", None, "why"),
                                  ("edit", {"to": "b"}, ""), ("expire", None, "expired")]:
        check_decision(shape, payload, kind, edited, comment)  # raises if refused


def test_human_interrupt_refuses_what_its_config_does_not_allow():
    message = refused("human_interrupt", [human(allow_edit=False)], "edit", {"to": "b"})
    assert "allow_edit" in message and "allowed: APPROVE, REJECT, REJECT with a comment" in message
    assert "allow_accept" in refused("human_interrupt", [human(allow_accept=False)], "approve")
    no_reject = human(allow_ignore=False, allow_respond=False)
    assert "not allowed" in refused("human_interrupt", [no_reject], "reject", comment="no")
    # respond but not ignore: a REJECT must carry the response
    respond_only = human(allow_ignore=False)
    assert "needs a comment" in refused("human_interrupt", [respond_only], "reject")
    check_decision("human_interrupt", [respond_only], "reject", None, "do it tomorrow")
    assert value("human_interrupt", [respond_only], "reject", comment="do it tomorrow") == [
        {"type": "response", "args": "do it tomorrow"}]


def test_human_interrupt_edit_needs_one_request_and_a_well_formed_action_request():
    assert "2 HumanInterrupts" in refused("human_interrupt", [HUMAN, HUMAN], "edit", {"to": "b"})
    refused("human_interrupt", [HUMAN], "edit", {"action": "send_email"}, code="EDITED_VALUE_INVALID")


def test_hitl_refuses_what_its_review_config_does_not_allow():
    approve_only = {**HITL, "review_configs": [{"action_name": "send_email", "allowed_decisions": ["approve"]}]}
    message = refused("hitl", approve_only, "reject")
    assert "send_email" in message and "allowed: APPROVE" in message
    assert "allowed: APPROVE" in refused("hitl", approve_only, "edit", {"to": "b"})
    assert "delete_file" in refused("hitl", HITL_TWO, "edit", {"decisions": [
        {"type": "approve"}, {"type": "edit", "edited_action": {"name": "delete_file", "args": {}}}]})
    no_config = {**HITL, "review_configs": []}
    assert "allowed: nothing" in refused("hitl", no_config, "approve")


def test_hitl_edit_of_several_actions_needs_all_decisions():
    message = refused("hitl", HITL_TWO, "edit", {"to": "b"}, code="EDITED_VALUE_INVALID")
    assert "2 action requests" in message and "decisions" in message
    refused("hitl", HITL_TWO, "edit", {"decisions": [{"type": "approve"}]}, code="EDITED_VALUE_INVALID")
    refused("hitl", HITL_TWO, "edit", {"decisions": [{"type": "approve"}, {"type": "maybe"}]},
            code="EDITED_VALUE_INVALID")
    refused("hitl", HITL, "edit", {"decisions": [{"type": "edit", "edited_action": {"name": "x"}}]},
            code="EDITED_VALUE_INVALID")
    refused("hitl", HITL, "edit", {"name": "send_email", "args": "not an object"}, code="EDITED_VALUE_INVALID")
    check_decision("hitl", HITL_TWO, "edit", {"decisions": [{"type": "approve"}, {"type": "reject"}]})


def test_an_edit_of_only_rejections_must_be_a_reject():
    # An EDITED approval counts as approved for node policies.
    assert "REJECT" in refused("hitl", HITL_TWO, "edit", {"decisions": [{"type": "reject"}, {"type": "reject"}]})


def test_expiry_is_never_refused():
    nothing = human(allow_ignore=False, allow_respond=False, allow_edit=False, allow_accept=False)
    check_decision("human_interrupt", [nothing], "expire", None, "expired")
    check_decision("hitl", {**HITL, "review_configs": []}, "expire", None, "expired")


def test_edit_needs_an_object():
    refused("plain", PLAIN, "edit", None, code="EDITED_VALUE_INVALID")
