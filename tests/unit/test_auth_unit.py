"""Authentication and authorization logic without a mesh: principals, the rules table,
grants, JWT verification, the authenticator and the static-token cache."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

import jwt
import pytest

import graphmesh.v1
from graphmesh.auth.authenticator import Authenticator, authorize
from graphmesh.auth.principals import (
    ALL_GRAPHS,
    ROLES,
    Principal,
    development_principal,
    ensure_can_decide,
    ensure_can_see_run,
)
from graphmesh.auth.rules import METHOD_ROLES, PUBLIC_PREFIXES
from graphmesh.auth.tokens import (
    JWT_AUDIENCE,
    TOKEN_PREFIX,
    JwtVerifier,
    TokenStore,
    check_grant,
    hash_token,
    issue_jwt,
    new_token,
)
from graphmesh.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def P(name: str, *roles: str, graphs=(ALL_GRAPHS,)) -> Principal:  # noqa: N802 - reads like a constructor
    return Principal(name, frozenset(roles), frozenset(graphs))


def _code(excinfo) -> str:
    return excinfo.value.code


# -- principals ---------------------------------------------------------------------------

def test_has_any_of_the_roles():
    sam = P("sam", "submitter")
    assert sam.has("submitter")
    assert sam.has("operator", "submitter")
    assert not sam.has("operator")
    assert not sam.has()
    assert not P("nobody").has("submitter")


def test_admin_holds_every_role_including_approval_roles():
    admin = P("root", "admin")
    for role in (*ROLES, "finance", "legal", "anything"):
        assert admin.has(role)


def test_approval_roles_are_ordinary_roles():
    fin = P("fin", "reviewer", "finance")
    assert fin.has("finance") and fin.has("reviewer")
    assert not fin.has("legal")


def test_covers_star_or_listed_graphs():
    assert P("a", "reviewer").covers("anything")
    rita = P("rita", "reviewer", graphs=["approval_workflow"])
    assert rita.covers("approval_workflow")
    assert not rita.covers("parallel_review")
    assert not rita.covers(ALL_GRAPHS)  # listing one graph is not covering all
    assert not rita.covers("")
    assert not P("x", "reviewer", graphs=[]).covers("tiny")


def test_require_role_then_graph():
    olga = P("olga", "operator", graphs=["tiny"])
    olga.require("operator")
    olga.require("operator", graph="tiny")
    olga.require("submitter", "operator", graph="tiny")
    with pytest.raises(PermissionDenied) as e:
        olga.require("reviewer", action="decide")
    assert _code(e) == "ROLE_REQUIRED" and "olga" in e.value.message and "reviewer" in e.value.message
    with pytest.raises(PermissionDenied) as e:
        olga.require("operator", graph="research_assistant", action="cancel")
    assert _code(e) == "GRAPH_NOT_COVERED" and "research_assistant" in e.value.message
    # The role is checked first: no role and no graph reads as a missing role.
    with pytest.raises(PermissionDenied) as e:
        olga.require("admin", graph="research_assistant")
    assert _code(e) == "ROLE_REQUIRED"


def test_admin_still_needs_the_graph_when_narrowed():
    narrowed = P("a", "admin", graphs=["tiny"])
    narrowed.require("operator", graph="tiny")
    with pytest.raises(PermissionDenied) as e:
        narrowed.require("operator", graph="research_assistant")
    assert _code(e) == "GRAPH_NOT_COVERED"


def test_development_principal_holds_every_role():
    dev = development_principal("alice")
    assert dev.name == "alice" and dev.via == "development"
    assert all(dev.has(r) for r in ROLES) and dev.covers("tiny")
    assert development_principal("").name == "anonymous"


def _run(owner: str, graph: str = "tiny"):
    return SimpleNamespace(run_id="r-1", owner=owner, graph=graph)


def test_see_run_owner_or_covering_operator_or_reviewer():
    ensure_can_see_run(P("sam", "submitter"), _run("sam"))
    with pytest.raises(PermissionDenied) as e:
        ensure_can_see_run(P("sue", "submitter"), _run("sam"))
    assert _code(e) == "NOT_YOUR_RUN"
    ensure_can_see_run(P("olga", "operator", graphs=["tiny"]), _run("sam", "tiny"))
    with pytest.raises(PermissionDenied):
        ensure_can_see_run(P("olga", "operator", graphs=["tiny"]), _run("sam", "research_assistant"))
    ensure_can_see_run(P("rita", "reviewer", graphs=["approval_workflow"]), _run("sam", "approval_workflow"))
    with pytest.raises(PermissionDenied):
        ensure_can_see_run(P("rita", "reviewer", graphs=["approval_workflow"]), _run("sam", "tiny"))
    ensure_can_see_run(P("root", "admin"), _run("sam", "anything"))


def _approval(graph: str = "parallel_review", role: str = ""):
    return SimpleNamespace(approval_id="a-1", graph=graph, required_role=role)


def test_decide_needs_reviewer_graph_and_required_role():
    fin = P("fin", "reviewer", "finance")
    ensure_can_decide(fin, _approval(role="finance"))
    ensure_can_decide(fin, _approval(role=""))
    with pytest.raises(PermissionDenied) as e:
        ensure_can_decide(fin, _approval(role="legal"))
    assert _code(e) == "ROLE_REQUIRED" and "legal" in e.value.message
    rita = P("rita", "reviewer", graphs=["approval_workflow"])
    ensure_can_decide(rita, _approval("approval_workflow", role="reviewer"))
    with pytest.raises(PermissionDenied) as e:
        ensure_can_decide(rita, _approval("parallel_review"))
    assert _code(e) == "GRAPH_NOT_COVERED"
    with pytest.raises(PermissionDenied) as e:
        ensure_can_decide(P("sam", "submitter", "finance"), _approval(role="finance"))
    assert _code(e) == "ROLE_REQUIRED"  # an approval role alone does not make a reviewer
    ensure_can_decide(P("root", "admin"), _approval(role="legal"))


# -- the rules table ----------------------------------------------------------------------

def _proto_methods() -> dict[str, tuple[bool, bool]]:
    """'/pkg.Service/Method' -> (client streaming, server streaming) for every service in graphmesh.v1."""
    methods: dict[str, tuple[bool, bool]] = {}
    for info in pkgutil.iter_modules(graphmesh.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"graphmesh.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                methods[f"/{service.full_name}/{m.name}"] = (m.client_streaming, m.server_streaming)
    return methods


def test_proto_services_are_found():
    services = {path.split("/")[1] for path in _proto_methods()}
    assert {"graphmesh.v1.RunService", "graphmesh.v1.GraphService", "graphmesh.v1.ReviewService",
            "graphmesh.v1.WorkerService", "graphmesh.v1.AuthService"} <= services


def test_every_rpc_has_a_rule():
    missing = sorted(set(_proto_methods()) - set(METHOD_ROLES))
    assert not missing, f"RPCs without an authorization rule (they would be refused to everyone): {missing}"


def test_every_rule_names_an_rpc():
    stale = sorted(set(METHOD_ROLES) - set(_proto_methods()))
    assert not stale, f"rules for RPCs the contract does not have: {stale}"


def test_rules_name_only_builtin_roles():
    for method, roles in METHOD_ROLES.items():
        assert roles, method
        assert set(roles) <= set(ROLES), f"{method}: {roles}"


def test_no_rpc_uses_client_streaming():
    # The interceptor only wraps unary and server-streaming handlers.
    assert not [m for m, (client_streaming, _) in _proto_methods().items() if client_streaming]


def test_graphmesh_rpcs_are_not_public():
    assert not [m for m in _proto_methods() if m.startswith(PUBLIC_PREFIXES)]
    assert "/grpc.health.v1.Health/Check".startswith(PUBLIC_PREFIXES)


@pytest.mark.parametrize("method, allowed, refused", [
    ("/graphmesh.v1.RunService/CreateRun", ["submitter", "operator", "admin"], ["reviewer"]),
    ("/graphmesh.v1.RunService/GetRun", ["submitter", "reviewer", "operator"], []),
    ("/graphmesh.v1.RunService/CancelRun", ["operator", "admin", "submitter"], ["reviewer"]),  # its own runs
    ("/graphmesh.v1.RunService/RetryRun", ["operator"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.RunService/ResumeRun", ["operator"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.GraphService/ListGraphs", ["submitter", "reviewer", "operator"], ["finance"]),
    ("/graphmesh.v1.GraphService/SetRollout", ["operator", "admin"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.GraphService/DisableNode", ["operator"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.GraphService/ListWorkers", ["operator"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.ReviewService/Decide", ["reviewer", "admin", "submitter"], ["operator", "finance"]),
    ("/graphmesh.v1.ReviewService/ListApprovals", ["reviewer", "submitter"], ["operator"]),
    ("/graphmesh.v1.ReviewService/ListAuditRecords", ["reviewer", "operator"], ["submitter"]),
    ("/graphmesh.v1.WorkerService/Drain", ["operator", "admin"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.WorkerService/GetWorkerStatus", ["operator"], ["submitter", "reviewer"]),
    ("/graphmesh.v1.AuthService/WhoAmI", ["submitter", "reviewer", "operator", "admin"], ["finance"]),
    ("/graphmesh.v1.AuthService/CreateToken", ["admin"], ["submitter", "reviewer", "operator"]),
    ("/graphmesh.v1.AuthService/ListTokens", ["admin"], ["submitter", "reviewer", "operator"]),
    ("/graphmesh.v1.AuthService/RevokeToken", ["admin"], ["submitter", "reviewer", "operator"]),
])
def test_authorize(method, allowed, refused):
    for role in allowed:
        authorize(method, P("x", role))
    for role in refused:
        with pytest.raises(PermissionDenied) as e:
            authorize(method, P("x", role))
        assert _code(e) == "ROLE_REQUIRED"


def test_authorize_denies_unknown_methods_even_to_admin():
    for method in ("/graphmesh.v1.RunService/NoSuchThing", "/graphmesh.v1.Secret/Do", ""):
        with pytest.raises(PermissionDenied) as e:
            authorize(method, P("root", "admin"))
        assert _code(e) == "METHOD_NOT_ALLOWED"


# -- grants -------------------------------------------------------------------------------

@pytest.mark.parametrize("principal, roles, graphs", [
    ("sam", ["submitter"], ["*"]),
    ("fin", ["reviewer", "finance"], []),
    ("ci.bot-1", ["operator"], ["tiny", "research_assistant"]),
    ("A" * 64, ["admin"], ["*"]),
    ("x", ["submitter", "admin", "reviewer", "operator"], ["g.1", "g-2", "g_3"]),
])
def test_check_grant_accepts(principal, roles, graphs):
    check_grant(principal, roles, graphs)


@pytest.mark.parametrize("principal, roles, graphs, code", [
    ("", ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    ("-sam", ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    (".sam", ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    ("s" * 65, ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    ("sam smith", ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    ("sàm", ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    ("sam;drop", ["submitter"], ["*"], "INVALID_PRINCIPAL"),
    ("sam", [], ["*"], "INVALID_ROLES"),
    ("sam", ["finance"], ["*"], "INVALID_ROLES"),  # approval roles need a built-in role too
    ("sam", ["Submitter"], ["*"], "INVALID_ROLES"),
    ("sam", ["submitter", "bad role"], ["*"], "INVALID_ROLES"),
    ("sam", ["submitter", ""], ["*"], "INVALID_ROLES"),
    ("sam", ["submitter"], ["tiny", ""], "INVALID_GRAPHS"),
    ("sam", ["submitter"], ["ti ny"], "INVALID_GRAPHS"),
    ("sam", ["submitter"], ["**"], "INVALID_GRAPHS"),
    ("sam", ["submitter"], ["tiny*"], "INVALID_GRAPHS"),
])
def test_check_grant_refuses(principal, roles, graphs, code):
    with pytest.raises(InvalidArgument) as e:
        check_grant(principal, roles, graphs)
    assert _code(e) == code


@pytest.mark.parametrize("principal, roles, graphs", [
    ("sam\n", ["submitter"], ["*"]),
    ("sam", ["submitter", "finance\n"], ["*"]),
    ("sam", ["submitter"], ["tiny\n"]),
], ids=["principal", "role", "graph"])
def test_check_grant_refuses_trailing_newline(principal, roles, graphs):
    with pytest.raises(InvalidArgument):
        check_grant(principal, roles, graphs)


def test_check_grant_refuses_none_principal():
    with pytest.raises(InvalidArgument):
        check_grant(None, ["submitter"], [])  # type: ignore[arg-type]


def test_new_tokens_are_prefixed_unique_and_hashed():
    token_id, token = new_token()
    assert token.startswith(f"{TOKEN_PREFIX}{token_id}_")
    assert len(token_id) == 12 and int(token_id, 16) >= 0
    assert len(token) > len(TOKEN_PREFIX) + 12 + 40  # 32 random bytes of secret
    assert len({new_token()[1] for _ in range(100)}) == 100
    digest = hash_token(token)
    assert len(digest) == 64 and token not in digest and digest == hash_token(token)
    assert hash_token(token + "x") != digest


# -- JWTs ---------------------------------------------------------------------------------

def _claims(**overrides):
    now = int(time.time())
    claims = {"sub": "jay", "roles": ["submitter"], "graphs": ["tiny"], "aud": JWT_AUDIENCE, "iat": now,
              "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs(claims, key=SECRET, **kw) -> str:
    return jwt.encode(claims, key, algorithm="HS256", **kw)


def test_jwt_valid():
    p = JwtVerifier(SECRET, ["HS256"]).principal(_hs(_claims()))
    assert p == Principal("jay", frozenset({"submitter"}), frozenset({"tiny"}), via="jwt")


def test_issue_jwt_round_trip():
    token = issue_jwt(SECRET, "ops", ["operator", "finance"], ["tiny"], issuer="idp")
    p = JwtVerifier(SECRET, ["HS256"], issuer="idp").principal(token)
    assert (p.name, p.roles, p.graphs, p.via) == ("ops", frozenset({"operator", "finance"}), frozenset({"tiny"}), "jwt")
    default = JwtVerifier(SECRET, ["HS256"]).principal(issue_jwt(SECRET, "a", ["reviewer"]))
    assert default.graphs == frozenset({ALL_GRAPHS})


def test_jwt_without_graphs_covers_all_and_without_roles_has_none():
    p = JwtVerifier(SECRET, ["HS256"]).principal(_hs(_claims(roles=None, graphs=None)))
    assert p.roles == frozenset() and p.covers("anything")
    with pytest.raises(PermissionDenied):
        authorize("/graphmesh.v1.AuthService/WhoAmI", p)


def _refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as e:
        verifier.principal(token)
    assert _code(e) == "INVALID_TOKEN"
    return e.value.message


@pytest.mark.parametrize("claims", [
    _claims(exp=int(time.time()) - 5),
    _claims(aud="someone-else"),
    _claims(aud=None),
    _claims(sub=None),
    _claims(exp=None),
    _claims(nbf=int(time.time()) + 3600),
    _claims(iat="yesterday"),
    _claims(roles="admin"),  # a string, not a list
    _claims(graphs="*"),
    _claims(roles={"admin": True}),
], ids=["expired", "audience", "no-audience", "no-sub", "no-exp", "not-yet-valid", "bad-iat",
        "roles-string", "graphs-string", "roles-object"])
def test_jwt_invalid_claims(claims):
    _refused(JwtVerifier(SECRET, ["HS256"]), _hs(claims))


def test_jwt_expired_by_issue_jwt():
    _refused(JwtVerifier(SECRET, ["HS256"]), issue_jwt(SECRET, "jay", ["submitter"], ttl_seconds=-30))


def test_jwt_wrong_key():
    _refused(JwtVerifier(SECRET, ["HS256"]), issue_jwt("another-secret-of-sufficient-length-42", "jay", ["admin"]))


def test_jwt_tampered_payload():
    token = issue_jwt(SECRET, "jay", ["submitter"])
    header, payload, signature = token.split(".")
    forged = issue_jwt("x" * 40, "jay", ["admin"]).split(".")[1]
    _refused(JwtVerifier(SECRET, ["HS256"]), f"{header}.{forged}.{signature}")
    _refused(JwtVerifier(SECRET, ["HS256"]), f"{header}.{payload}.")
    _refused(JwtVerifier(SECRET, ["HS256"]), "a.b.c")


def test_jwt_alg_none_refused():
    token = jwt.encode(_claims(roles=["admin"]), None, algorithm="none")
    _refused(JwtVerifier(SECRET, ["HS256"]), token)


def test_jwt_issuer():
    verifier = JwtVerifier(SECRET, ["HS256"], issuer="https://idp.example")
    assert verifier.principal(_hs(_claims(iss="https://idp.example"))).name == "jay"
    _refused(verifier, _hs(_claims()))  # no iss
    _refused(verifier, _hs(_claims(iss="https://evil.example")))
    # Without a configured issuer any iss is accepted.
    assert JwtVerifier(SECRET, ["HS256"]).principal(_hs(_claims(iss="whoever"))).name == "jay"


def test_jwt_sub_is_a_string():
    p = JwtVerifier(SECRET, ["HS256"]).principal(_hs(_claims(sub="12345")))
    assert p.name == "12345"


def _ec_keys():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public_pem


def test_jwt_public_key_from_settings(tmp_path):
    private, public_pem = _ec_keys()
    path = tmp_path / "jwt.pub"
    path.write_text(public_pem)
    verifier = JwtVerifier.from_settings("ignored-secret", str(path), "")
    assert verifier is not None
    assert verifier.principal(jwt.encode(_claims(), private, algorithm="ES256")).name == "jay"
    other, _ = _ec_keys()
    _refused(verifier, jwt.encode(_claims(), other, algorithm="ES256"))
    # Key confusion: an HS256 token "signed" with the public key must not pass.
    _refused(verifier, _hs(_claims(roles=["admin"]), key=SECRET))
    with pytest.raises(Exception):
        _hs(_claims(), key=public_pem)  # PyJWT itself refuses a PEM key as an HMAC secret
    _refused(JwtVerifier(SECRET, ["HS256"]), jwt.encode(_claims(), private, algorithm="ES256"))


def test_jwt_from_settings():
    assert JwtVerifier.from_settings("", "", "") is None
    verifier = JwtVerifier.from_settings(SECRET, "", "iss-1")
    assert verifier.principal(_hs(_claims(iss="iss-1"))).name == "jay"
    _refused(verifier, _hs(_claims()))


# -- the authenticator --------------------------------------------------------------------

class FakeTokens:
    def __init__(self, known: dict[str, Principal]) -> None:
        self.known, self.asked = known, []

    async def principal(self, token: str) -> Principal | None:
        self.asked.append(token)
        return self.known.get(token)


SAM = P("sam", "submitter")


def _authenticate(auth: Authenticator, metadata):
    return asyncio.run(auth.authenticate(metadata))


def _token_auth(jwt_verifier=None) -> tuple[Authenticator, FakeTokens]:
    tokens = FakeTokens({"gm_abc_secret": SAM})
    return Authenticator("token", tokens, jwt_verifier), tokens


def test_authenticator_mode_is_checked():
    for mode in ("", "tokens", "None", "off"):
        with pytest.raises(ValueError):
            Authenticator(mode, None, None)


def test_development_mode_trusts_gm_principal():
    auth = Authenticator("none", None, None)
    assert _authenticate(auth, [("gm-principal", "alice")]).name == "alice"
    assert _authenticate(auth, []).name == "anonymous"
    assert _authenticate(auth, None).name == "anonymous"


def test_static_token():
    auth, tokens = _token_auth()
    assert _authenticate(auth, [("authorization", "Bearer gm_abc_secret")]) is SAM
    assert _authenticate(auth, [("authorization", "bearer   gm_abc_secret  ")]) is SAM
    with pytest.raises(Unauthenticated) as e:
        _authenticate(auth, [("authorization", "Bearer gm_abc_wrong")])
    assert _code(e) == "INVALID_TOKEN"


def test_token_mode_ignores_gm_principal():
    auth, _ = _token_auth()
    p = _authenticate(auth, [("gm-principal", "mallory"), ("authorization", "Bearer gm_abc_secret")])
    assert p.name == "sam"
    with pytest.raises(Unauthenticated) as e:
        _authenticate(auth, [("gm-principal", "mallory")])
    assert _code(e) == "MISSING_TOKEN"


@pytest.mark.parametrize("header, code", [
    (None, "MISSING_TOKEN"),
    ("", "MISSING_TOKEN"),
    ("gm_abc_secret", "INVALID_TOKEN"),  # no scheme
    ("Basic gm_abc_secret", "INVALID_TOKEN"),
    ("Token gm_abc_secret", "INVALID_TOKEN"),
    ("Bearer", "INVALID_TOKEN"),
    ("Bearer ", "INVALID_TOKEN"),
    ("Bearer    ", "INVALID_TOKEN"),
    ("Bearer garbage", "INVALID_TOKEN"),
    ("Bearer a.b.c", "INVALID_TOKEN"),  # a JWT shape, but no verifier is configured
    ("Bearer gm_", "INVALID_TOKEN"),
])
def test_token_mode_refuses(header, code):
    auth, _ = _token_auth()
    metadata = [] if header is None else [("authorization", header)]
    with pytest.raises(Unauthenticated) as e:
        _authenticate(auth, metadata)
    assert _code(e) == code


def test_jwt_through_the_authenticator():
    auth, tokens = _token_auth(JwtVerifier(SECRET, ["HS256"]))
    p = _authenticate(auth, [("authorization", f"Bearer {issue_jwt(SECRET, 'jay', ['reviewer'])}")])
    assert (p.name, p.via) == ("jay", "jwt")
    assert tokens.asked == []  # a JWT is not looked up as a static token
    with pytest.raises(Unauthenticated):
        _authenticate(auth, [("authorization", f"Bearer {issue_jwt('wrong-key-' * 5, 'jay', ['admin'])}")])


# -- the static-token store's cache -------------------------------------------------------

class FakeCursor:
    def __init__(self, rows, rowcount=0) -> None:
        self._rows, self.rowcount = rows, rowcount

    async def fetchone(self):
        return self._rows[0] if self._rows else None

    async def fetchall(self):
        return self._rows


class FakeDb:
    """Just enough of RunStore.connection() for TokenStore: one table in a dict by hash."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.queries = 0

    @asynccontextmanager
    async def connection(self):
        yield self

    async def execute(self, sql: str, args=()):
        self.queries += 1
        if sql.startswith("INSERT"):
            token_id, principal, roles, graphs, digest, created_by = args
            self.rows[digest] = {"token_id": token_id, "principal": principal, "roles": roles.obj,
                                 "graphs": graphs.obj, "revoked": False}
            return FakeCursor([])
        if sql.startswith("UPDATE"):
            hits = [r for r in self.rows.values() if r["token_id"] == args[0] and not r["revoked"]]
            for r in hits:
                r["revoked"] = True
            return FakeCursor([], rowcount=len(hits))
        if sql.startswith("SELECT token_id, principal, roles, graphs FROM"):
            row = self.rows.get(args[0])
            return FakeCursor([] if row is None or row["revoked"] else [row])
        raise AssertionError(sql)


def test_token_store_stores_only_the_hash_and_caches():
    async def scenario():
        db = FakeDb()
        store = TokenStore(db)
        token_id, token = await store.create("sam", ["submitter"], [], created_by="admin")
        assert list(db.rows) == [hash_token(token)]
        assert token not in repr(db.rows)
        assert db.rows[hash_token(token)]["graphs"] == [ALL_GRAPHS]  # empty means all
        p = await store.principal(token)
        assert (p.name, p.roles, p.graphs, p.via) == ("sam", frozenset({"submitter"}), frozenset({"*"}),
                                                      f"token:{token_id}")
        before = db.queries
        assert await store.principal(token) == p
        assert db.queries == before  # served from the cache
        assert await store.principal(token + "x") is None
        await store.revoke(token_id)
        assert await store.principal(token) is None  # this process forgets at once
        with pytest.raises(NotFound):
            await store.revoke(token_id)
        with pytest.raises(InvalidArgument):
            await store.create("bad name", ["submitter"], [], created_by="admin")

    asyncio.run(scenario())
