"""Principals: an authenticated caller, its roles and the graphs it covers."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from graphmesh.errors import PermissionDenied

ROLES = ("submitter", "reviewer", "operator", "admin")
ALL_GRAPHS = "*"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    graphs: frozenset[str] = frozenset({ALL_GRAPHS})
    via: str = ""  # how it authenticated: token:<id>, jwt, development

    def has(self, *roles: str) -> bool:
        """Holds one of `roles`; admin holds every role."""
        return "admin" in self.roles or any(r in self.roles for r in roles)

    def covers(self, graph: str) -> bool:
        return ALL_GRAPHS in self.graphs or graph in self.graphs

    def require(self, *roles: str, graph: str | None = None, action: str = "this") -> None:
        """PERMISSION_DENIED unless the principal holds a role (and covers the graph)."""
        if not self.has(*roles):
            raise PermissionDenied(f"{self.name} may not {action}: it needs the role {' or '.join(roles)} "
                                   f"(it has: {', '.join(sorted(self.roles)) or 'none'})", code="ROLE_REQUIRED")
        if graph is not None and not self.covers(graph):
            raise PermissionDenied(f"{self.name} may not {action}: graph '{graph}' is not among its graphs "
                                   f"({', '.join(sorted(self.graphs))})", code="GRAPH_NOT_COVERED")


def development_principal(name: str) -> Principal:
    """With authentication off (GRAPHMESH_AUTH=none, development only): the caller names
    itself and holds every role."""
    return Principal(name or "anonymous", frozenset(ROLES), via="development")


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("graphmesh_principal", default=None)


def set_current(principal: Principal) -> contextvars.Token:
    return _current.set(principal)


def current() -> Principal:
    """The caller of the RPC being served (set by the auth interceptor)."""
    p = _current.get()
    if p is None:
        raise RuntimeError("no principal: the auth interceptor did not run for this call")
    return p


def ensure_can_see_run(principal: Principal, run) -> None:
    """Operators and reviewers see the runs of graphs they cover; others their own runs."""
    if principal.has("operator", "reviewer") and principal.covers(run.graph):
        return
    if run.owner == principal.name:
        return
    raise PermissionDenied(f"{principal.name} may not see run {run.run_id}: it is not its owner and does not "
                           f"operate or review graph '{run.graph}'", code="NOT_YOUR_RUN")


def ensure_can_decide(principal: Principal, approval, run_owner: str | None = None) -> bool:
    """A reviewer of the approval's graph (holding its required role) decides any approval;
    the run's owner, a submitter, only an interrupt no node policy role guards. Returns True
    when the principal decides as the run's owner (the servicer then allows only the
    decisions an owner may send and audits them as the owner's). `run_owner`: the owner of
    the approval's run, None when unknown (reviewers only)."""
    try:
        _ensure_reviewer_can_decide(principal, approval)
        return False
    except PermissionDenied:
        if run_owner is None or not principal.has("submitter"):
            raise
        if run_owner != principal.name:
            if principal.has("reviewer"):
                raise
            raise PermissionDenied(f"{principal.name} may not decide approval {approval.approval_id}: it is not the "
                                   f"owner of run {approval.run_id} and does not review graph '{approval.graph}'",
                                   code="NOT_YOUR_RUN") from None
    role = getattr(approval, "required_role", "")
    if role:
        raise PermissionDenied(f"approval {approval.approval_id} is guarded by its node policy (role '{role}'): "
                               f"a reviewer with that role decides it, not the run's owner {principal.name}",
                               code="ROLE_REQUIRED")
    return True


def _ensure_reviewer_can_decide(principal: Principal, approval) -> None:
    principal.require("reviewer", graph=approval.graph, action=f"decide approval {approval.approval_id}")
    role = getattr(approval, "required_role", "")
    if role and not principal.has(role):
        raise PermissionDenied(f"approval {approval.approval_id} needs a reviewer with the role '{role}'; "
                               f"{principal.name} has {', '.join(sorted(principal.roles))}", code="ROLE_REQUIRED")


def ensure_can_see_approval(principal: Principal, approval, run_owner: str | None = None) -> None:
    """Reviewers see the approvals of graphs they cover; a submitter those of its own runs."""
    if principal.has("reviewer") and principal.covers(approval.graph):
        return
    if run_owner is not None and run_owner == principal.name and principal.has("submitter"):
        return
    if not principal.has("submitter"):
        principal.require("reviewer", graph=approval.graph, action=f"see approval {approval.approval_id}")
    raise PermissionDenied(f"{principal.name} may not see approval {approval.approval_id}: it is not the owner of "
                           f"run {approval.run_id} and does not review graph '{approval.graph}'", code="NOT_YOUR_RUN")


def ensure_can_cancel(principal: Principal, run, verb: str = "cancel") -> None:
    """Operators cancel (or delete) the runs of graphs they cover; a submitter its own runs.
    `run`: anything with run_id, graph and owner."""
    if principal.has("operator") and principal.covers(run.graph):
        return
    if principal.has("submitter") and run.owner == principal.name:
        return
    if not principal.has("submitter"):
        principal.require("operator", graph=run.graph, action=f"{verb} run {run.run_id}")
    raise PermissionDenied(f"{principal.name} may not {verb} run {run.run_id}: it is not its owner and does not "
                           f"operate graph '{run.graph}'", code="NOT_YOUR_RUN")
