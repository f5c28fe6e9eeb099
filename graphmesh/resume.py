"""What a graph's interrupt() returns once a reviewer decides: shapes and values.

The shape is fixed when the approval is requested (the node policy's `resume`, or by
looking at the payload), stored with the approval, and decides both which decisions
Decide accepts and the value the run resumes with. A reject or an expiry is always
falsy or an explicit refusal in the graph's own vocabulary, never something an
`if interrupt(...)` could mistake for a yes.

    shape            approve          reject                  edit                       expire
    ---------------  ---------------  ----------------------  -------------------------  ----------------------
    plain            True             False                   the edited value (dict)    False
    human_interrupt  [accept]         [ignore], or            [edit {action, args}] (2)  [ignore]
                                      [response comment] (1)
    hitl             {decisions:      {decisions: [reject     {decisions: [edit          {decisions: [reject
                      [approve, ..]}   (message: comment)]}    {name, args}]} (3)          message: comment]}
    record           {approved, decision, edited_value, comment, reviewer, expired}: the decision record

A RESPOND decision (status RESPONDED) is the one exception to the table: the run resumes
with the value the reviewer gave, exactly, whatever the shape (LangGraph's
Command(resume=value), e.g. interrupt("question?") answered with a string, or a
HumanResponse list a client built itself). Every shape but `record` takes it; its value is
the caller's to get right, so it does not count as an approval for a node policy's
requires_approval. A `record` is graphmesh's own account of the decision (its reviewer,
decision and expiry, which graph code trusts), so it is never a caller's value: RESPOND is
refused there (RESPOND_NOT_FOR_RECORD), and a client decides with
{"decision": "approve" | "reject" | "edit", "comment"?, "edited_value"?} (canonical_decision).

    [accept] is [{"type": "accept", "args": None}], [response comment] is
    [{"type": "response", "args": comment}], [edit X] is [{"type": "edit", "args": X}];
    a hitl decision is {"type": "approve"}, {"type": "reject", "message"?: comment} or
    {"type": "edit", "edited_action": {"name", "args"}}. A reject without a comment has no message.

    human_interrupt: one response per request of the payload's list (agent-inbox's
      `interrupt([request])[0]`); a single request dict resumes with a one-item list too.
    (1) when the request allows respond; otherwise an ignore (and the comment stays in the audit).
    (2) the edited value is an ActionRequest {action, args}, or just the new args (the
        action's name is kept); only for a single request.
    (3) the edited value is an Action {name, args}, or just the new args (single action
        request); or a full {decisions: [...]}, one per action request (the only way to
        edit one of several, or to mix decisions).
    hitl: several action requests get the same approve / reject decision each.

Decisions an interrupt does not allow (HumanInterrupt `config.allow_*`, HITL
`review_configs[].allowed_decisions`) are refused by check_decision before anything is
recorded; an expiry is always accepted: nobody is there to ask, and it resumes with the
reject branch's value even where the request disallows it (the graph then refuses it
itself, e.g. HumanInTheLoopMiddleware raises, and the guarded action does not run).

HumanInterrupt, ActionRequest and HumanResponse as langgraph.prebuilt.interrupt defines
them (langgraph 1.x; agent-inbox's schema):
    HumanInterrupt  {action_request: {action: str, args: dict},
                     config: {allow_ignore, allow_respond, allow_edit, allow_accept: bool},
                     description: str | None}
    HumanResponse   {type: "accept" | "ignore" | "response" | "edit",
                     args: None | str | ActionRequest}
LangChain's HumanInTheLoopMiddleware (langchain v1,
libs/langchain_v1/langchain/agents/middleware/human_in_the_loop.py):
    HITLRequest     {action_requests: [{name: str, args: dict, description?: str}],
                     review_configs: [{action_name: str,
                                       allowed_decisions: ["approve" | "edit" | "reject"]}]}
    HITLResponse    {decisions: [{type: "approve"}
                                 | {type: "edit", edited_action: {name: str, args: dict}}
                                 | {type: "reject", message?: str}]}  one per action request, in order
"""

from __future__ import annotations

from typing import Any

from graphmesh.errors import InvalidArgument
from graphmesh.jsonvalues import same_json

PLAIN = "plain"
HUMAN_INTERRUPT = "human_interrupt"
HITL = "hitl"
RECORD = "record"
SHAPES = (PLAIN, HUMAN_INTERRUPT, HITL, RECORD)
# The decision kind that resumes with a value as given, and the approval status it records.
RESPOND = "respond"
RESPONDED = "RESPONDED"

NOT_ALLOWED = "DECISION_NOT_ALLOWED"
BAD_EDIT = "EDITED_VALUE_INVALID"

# decision kind -> the HumanInterrupt config flag that allows it
_HUMAN_FLAGS = {"approve": "allow_accept", "edit": "allow_edit"}
_HITL_TYPES = ("approve", "edit", "reject")


# -- which shape ---------------------------------------------------------------------------

def detect_shape(payload: Any) -> str:
    """The shape an interrupt's payload asks for: a HumanInterrupt (or a list of them), a
    HITL request, or anything else: plain."""
    if _is_hitl_request(payload):
        return HITL
    requests = payload if isinstance(payload, list) else [payload]
    if requests and all(_is_human_interrupt(r) for r in requests):
        return HUMAN_INTERRUPT
    return PLAIN


def choose_shape(declared: str, payload: Any) -> str:
    """The node policy's `resume` ("auto" or a shape) applied to a payload. A declared
    HumanInterrupt or HITL shape the payload does not have falls back to plain, which
    cannot be mistaken for an approval either."""
    if declared in (PLAIN, RECORD):
        return declared
    detected = detect_shape(payload)
    if declared in (HUMAN_INTERRUPT, HITL) and detected != declared:
        return PLAIN
    return detected


def _is_human_interrupt(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("config"), dict)
            and isinstance(value.get("action_request"), dict)
            and isinstance(value["action_request"].get("action"), str))


def _is_hitl_request(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("action_requests"), list)
            and isinstance(value.get("review_configs"), list) and bool(value["action_requests"])
            and all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in value["action_requests"]))


# -- which decisions -------------------------------------------------------------------------

def check_decision(shape: str, payload: Any, kind: str, edited_value: Any, comment: str = "") -> None:
    """Raises InvalidArgument (code DECISION_NOT_ALLOWED or EDITED_VALUE_INVALID) for a
    decision this interrupt does not allow, naming what it does allow. A RESPOND is refused
    only for the record shape (RESPOND_NOT_FOR_RECORD: the record is graphmesh's to write);
    elsewhere the interrupt gets what the reviewer wrote."""
    if kind == RESPOND and shape == RECORD:
        raise InvalidArgument("this approval resumes with graphmesh's decision record (its reviewer, decision and "
                              "expiry), which a caller cannot write: decide with APPROVE, REJECT or EDIT instead "
                              "(through command.resume: {\"decision\": \"approve\" | \"reject\" | \"edit\", "
                              "\"comment\"?, \"edited_value\"?})", code="RESPOND_NOT_FOR_RECORD")
    if kind in ("expire", RESPOND):
        return
    if kind == "edit" and not isinstance(edited_value, dict):
        raise InvalidArgument("an EDIT decision needs edited_value (an object)", code=BAD_EDIT)
    if shape == HUMAN_INTERRUPT:
        _check_human(_human_requests(payload), kind, edited_value, comment)
    elif shape == HITL:
        _check_hitl(payload, kind, edited_value)


def allowed_decisions(shape: str, payload: Any) -> tuple[list[str], bool]:
    """What a review tool may offer for this interrupt: the decision kinds check_decision
    accepts (in the order approve, reject, edit) and whether a REJECT needs a comment (a
    HumanInterrupt that allows a response but not ignore)."""
    kinds = []
    for kind in ("approve", "reject", "edit"):
        try:
            check_decision(shape, payload, kind, {}, comment="-")
        except InvalidArgument:
            # A multi-action HITL request is edited as {decisions: [...]}: open when any action edits.
            if kind == "edit" and shape == HITL and any("edit" in a for a in _hitl_allowed(payload)):
                kinds.append(kind)
            continue
        kinds.append(kind)
    needs_comment = "reject" in kinds and shape == HUMAN_INTERRUPT and not all(
        (r.get("config") or {}).get("allow_ignore") for r in _human_requests(payload))
    return kinds, needs_comment


def _check_human(requests: list[dict], kind: str, edited_value: Any, comment: str) -> None:
    for i, request in enumerate(requests):
        config = request.get("config") or {}
        allowed = _human_allowed(config)
        where = f"HumanInterrupt {i} ({request['action_request']['action']})"
        if kind == "reject":
            if config.get("allow_ignore") or (config.get("allow_respond") and comment):
                continue
            need = ("needs a comment: it allows a response, not ignore" if config.get("allow_respond")
                    else "is not allowed (allow_ignore and allow_respond are false)")
            raise InvalidArgument(f"REJECT of {where} {need}; allowed: {allowed}", code=NOT_ALLOWED)
        elif not config.get(_HUMAN_FLAGS[kind]):
            raise InvalidArgument(f"{where} does not allow {kind.upper()} ({_HUMAN_FLAGS[kind]} is false); "
                                  f"allowed: {allowed}", code=NOT_ALLOWED)
    if kind == "edit" and len(requests) != 1:
        raise InvalidArgument(f"this interrupt carries {len(requests)} HumanInterrupts; an EDIT can answer only "
                              "one: APPROVE or REJECT them all instead", code=NOT_ALLOWED)
    if kind == "edit" and "action" in edited_value and not _is_action_request(edited_value):
        raise InvalidArgument("edited_value for a HumanInterrupt is an ActionRequest {action: str, args: object} "
                              "or the new args", code=BAD_EDIT)


def _human_allowed(config: dict) -> str:
    names = {"allow_accept": "APPROVE", "allow_edit": "EDIT", "allow_ignore": "REJECT",
             "allow_respond": "REJECT with a comment"}
    return ", ".join(name for flag, name in names.items() if config.get(flag)) or "nothing"


def _check_hitl(payload: dict, kind: str, edited_value: Any) -> None:
    actions, allowed = payload["action_requests"], _hitl_allowed(payload)
    if kind == "edit" and "decisions" in edited_value:
        _check_hitl_decisions(actions, allowed, edited_value)
        return
    if kind == "edit" and len(actions) != 1:
        raise InvalidArgument(f"this request has {len(actions)} action requests: an EDIT's edited_value must be "
                              "{decisions: [...]}, one decision per action request", code=BAD_EDIT)
    for action, permitted in zip(actions, allowed):
        if kind not in permitted:
            raise InvalidArgument(f"action '{action['name']}' does not allow {kind.upper()}; allowed: "
                                  f"{', '.join(permitted).upper() or 'nothing'}", code=NOT_ALLOWED)
    if kind == "edit":
        if "name" in edited_value and not _is_action(edited_value):
            raise InvalidArgument("edited_value for a HITL request is {name: str, args: object}, the new args, or "
                                  "{decisions: [...]}", code=BAD_EDIT)


def _check_hitl_decisions(actions: list[dict], allowed: list[list[str]], edited_value: dict) -> None:
    decisions = edited_value["decisions"]
    if set(edited_value) != {"decisions"} or not isinstance(decisions, list) or len(decisions) != len(actions):
        raise InvalidArgument(f"edited_value {{decisions: [...]}} needs exactly {len(actions)} decisions, one per "
                              "action request, and nothing else", code=BAD_EDIT)
    for i, (decision, action, permitted) in enumerate(zip(decisions, actions, allowed)):
        kind = decision.get("type") if isinstance(decision, dict) else None
        if kind not in _HITL_TYPES or not _well_formed_hitl_decision(decision):
            raise InvalidArgument(f"decision {i} must be {{type: approve}}, {{type: edit, edited_action: "
                                  "{name, args}} or {type: reject, message?}", code=BAD_EDIT)
        if kind not in permitted:
            raise InvalidArgument(f"decision {i}: action '{action['name']}' does not allow {kind}; allowed: "
                                  f"{', '.join(permitted) or 'nothing'}", code=NOT_ALLOWED)
    # EDITED counts as approved for node policies: a list of rejections is a REJECT.
    if all(d["type"] == "reject" for d in decisions):
        raise InvalidArgument("every decision rejects: decide REJECT instead of EDIT", code=NOT_ALLOWED)


def _well_formed_hitl_decision(decision: dict) -> bool:
    if decision["type"] == "edit":
        return set(decision) == {"type", "edited_action"} and _is_action(decision["edited_action"])
    if decision["type"] == "reject":
        return set(decision) <= {"type", "message"} and isinstance(decision.get("message", ""), str)
    return set(decision) == {"type"}


def _hitl_allowed(payload: dict) -> list[list[str]]:
    """allowed_decisions of each action request: its review config by action name, else by
    position (the middleware writes one per action, in order), else none."""
    configs = [c for c in payload["review_configs"] if isinstance(c, dict)]
    by_name = {c.get("action_name"): c for c in configs}
    allowed = []
    for i, action in enumerate(payload["action_requests"]):
        config = by_name.get(action["name"]) or (configs[i] if i < len(configs) else {})
        allowed.append([d for d in config.get("allowed_decisions") or [] if d in _HITL_TYPES])
    return allowed


def _is_action_request(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"action", "args"} and isinstance(value["action"], str)
            and isinstance(value["args"], dict))


def _is_action(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"name", "args"} and isinstance(value["name"], str)
            and isinstance(value["args"], dict))


# -- the value -------------------------------------------------------------------------------

def resume_value(shape: str, payload: Any, *, status: str, decision_kind: str | None, edited_value: Any,
                 comment: str, reviewer: str, responded: Any = None) -> Any:
    """What interrupt() returns for a decided approval: `responded`, the RESPOND decision's
    value, for a RESPONDED one. Any kind other than approve or edit (reject, expire, or one
    this code does not know) takes the reject branch."""
    if status == RESPONDED:
        return responded
    kind = decision_kind if decision_kind in ("approve", "edit") else ("expire" if status == "EXPIRED" else "reject")
    if shape == RECORD:
        return {"approved": status in ("APPROVED", "EDITED"), "decision": decision_kind,
                "edited_value": edited_value, "comment": comment, "reviewer": reviewer,
                "expired": status == "EXPIRED"}
    if shape == HUMAN_INTERRUPT:
        return [_human_response(r, kind, edited_value, comment) for r in _human_requests(payload)]
    if shape == HITL:
        return _hitl_response(payload, kind, edited_value, comment)
    return edited_value if kind == "edit" else kind == "approve"


def _human_requests(payload: Any) -> list[dict]:
    return payload if isinstance(payload, list) else [payload]


def _human_response(request: dict, kind: str, edited_value: Any, comment: str) -> dict:
    if kind == "approve":
        return {"type": "accept", "args": None}
    if kind == "edit":
        edited = edited_value if _is_action_request(edited_value) else {
            "action": request["action_request"]["action"], "args": edited_value}
        return {"type": "edit", "args": edited}
    if kind == "reject" and comment and (request.get("config") or {}).get("allow_respond"):
        return {"type": "response", "args": comment}
    return {"type": "ignore", "args": None}


def _hitl_response(payload: dict, kind: str, edited_value: Any, comment: str) -> dict:
    actions = payload["action_requests"]
    if kind == "approve":
        return {"decisions": [{"type": "approve"} for _ in actions]}
    if kind == "edit":
        if "decisions" in edited_value:
            return {"decisions": edited_value["decisions"]}
        edited = edited_value if _is_action(edited_value) else {"name": actions[0]["name"], "args": edited_value}
        return {"decisions": [{"type": "edit", "edited_action": edited}]}
    reject = {"type": "reject", "message": comment} if comment else {"type": "reject"}
    return {"decisions": [dict(reject) for _ in actions]}


# -- canonical decisions ---------------------------------------------------------------------

# The approval status each decision records (resume_value reads it for the record shape).
_STATUS_OF = {"approve": "APPROVED", "reject": "REJECTED", "edit": "EDITED"}


def canonical_decision(shape: str, payload: Any, value: Any, *, note: str = "") -> tuple[str, Any, str] | None:
    """The decision (kind, edited_value, comment) that resumes this interrupt with exactly
    `value`, a resume value a client wrote itself (LangGraph's Command(resume=value)); None
    when there is none and the value can only be a RESPOND.

    A RESPOND never counts as an approval for a node policy (graphmesh cannot tell a yes from
    a no in a raw value), so a client's `true` would never let a guarded node run. Where the
    value is one the table above gives a decision, to the byte, that decision is the value's
    meaning: plain true / false; a HumanResponse list of accepts, of ignores, of responses
    with one text (a REJECT with that comment), or one edit with an ActionRequest; a HITL
    response of approves, or of rejects with one message or none. The graph then receives
    exactly what the client sent. The decision must also be one the interrupt allows
    (check_decision). A `record` value names its reviewer and decision, which are the review
    tier's to write: it never maps.

    `note` is the comment to record where the comment does not change the value (an
    approve, an edit, a plain reject); a comment that is part of the value is the value's.

    The record shape is the exception: its value (reviewer, decision, expiry) is graphmesh's
    to write, never a client's, so a client names the decision instead, as
    {"decision": "approve" | "reject" | "edit", "comment"?: str, "edited_value"?: object (an
    edit's, required there)} and nothing else; the graph then receives graphmesh's record of
    that decision (record_request builds the value back)."""
    if shape == RECORD:
        return _record_decision(payload, value, note)
    for kind, edited_value, comment in _candidates(shape, value):
        for text in ([comment] if comment is not None else [note, ""] if note else [""]):
            try:
                check_decision(shape, payload, kind, edited_value, text)
                mapped = resume_value(shape, payload, status=_STATUS_OF[kind], decision_kind=kind,
                                      edited_value=edited_value, comment=text, reviewer="")
            except (InvalidArgument, KeyError, TypeError, AttributeError):
                continue  # not a decision this interrupt takes (or a payload it cannot take)
            if same_json(mapped, value):
                return kind, edited_value, text
    return None


_RECORD_KEYS = {"decision", "comment", "edited_value"}


def _record_decision(payload: Any, value: Any, note: str) -> tuple[str, Any, str] | None:
    if not isinstance(value, dict) or not set(value) <= _RECORD_KEYS or value.get("decision") not in _STATUS_OF:
        return None
    kind, comment, edited_value = value["decision"], value.get("comment", note), value.get("edited_value")
    if not isinstance(comment, str) or (kind != "edit" and edited_value is not None):
        return None
    try:
        check_decision(RECORD, payload, kind, edited_value, comment)
    except InvalidArgument:
        return None
    return kind, edited_value, comment


def record_request(kind: str, edited_value: Any = None, comment: str = "") -> dict[str, Any]:
    """The value a client sends for a decision of a record-shaped interrupt (canonical_decision)."""
    return {"decision": kind, "comment": comment, **({"edited_value": edited_value} if kind == "edit" else {})}


def is_canonical(shape: str, payload: Any, kind: str, edited_value: Any, comment: str = "") -> bool:
    """Whether a decision is the canonical decision of the value it resumes with: what a
    run's owner may send in place of that value (a RESPOND always is; for the record shape,
    the decision a client's {"decision", ...} names, which the store then records as the
    owner's: the record names the owner as its reviewer)."""
    if kind == RESPOND:
        return True
    if kind not in _STATUS_OF:
        return False
    if shape == RECORD:
        return canonical_decision(shape, payload, record_request(kind, edited_value, comment),
                                  note=comment) == (kind, edited_value, comment)
    try:
        value = resume_value(shape, payload, status=_STATUS_OF[kind], decision_kind=kind,
                             edited_value=edited_value, comment=comment, reviewer="")
    except (KeyError, TypeError, AttributeError):
        return False
    found = canonical_decision(shape, payload, value, note=comment)
    return found is not None and found[0] == kind


def _candidates(shape: str, value: Any) -> list[tuple[str, Any, str | None]]:
    """Decisions that could stand for `value`: (kind, edited_value, comment; None where the
    comment is free). Each is checked against the value itself by the caller."""
    candidates: list[tuple[str, Any, str | None]] = [("approve", None, None), ("reject", None, None)]
    first = value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else None
    if shape == HUMAN_INTERRUPT and first is not None:
        if first.get("type") == "response" and isinstance(first.get("args"), str) and first["args"]:
            candidates.append(("reject", None, first["args"]))
        if first.get("type") == "edit" and isinstance(first.get("args"), dict):
            candidates.append(("edit", first["args"], None))
    if shape == HITL and isinstance(value, dict) and isinstance(value.get("decisions"), list) and value["decisions"]:
        decision = value["decisions"][0]
        if isinstance(decision, dict) and decision.get("type") == "reject" and isinstance(decision.get("message"), str):
            candidates.append(("reject", None, decision["message"]))
    return candidates

