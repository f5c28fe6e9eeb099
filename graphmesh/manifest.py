"""Graph manifest: the dataclasses a graph's entry parses into, and the parsers.

Two formats are accepted: graphmesh.yaml (full entries, strict: unknown keys are
errors so a typo never silently falls back to a default) and langgraph.json
(`{"graphs": {"name": "./mod.py:attr"}}`, each graph becoming version "1" with
default settings, so a LangGraph project runs unchanged).

Both may carry a project's deploy-time settings as LangGraph's tooling reads them
(`dependencies`, `env`): they parse into a ProjectSpec, applied by graphmesh/project.py
in every process that runs graph code. Keys of langgraph.json that graphmesh does not
use are kept as notices, reported once, not silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from graphmesh.errors import GraphmeshError

__all__ = [
    "ManifestError",
    "RetrySpec",
    "NodePolicy",
    "Limits",
    "Retention",
    "MigrationSpec",
    "GraphSpec",
    "ProjectSpec",
    "parse_manifest",
    "parse_langgraph_json",
    "parse_project",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SECRET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class ManifestError(GraphmeshError, ValueError):
    """A manifest is malformed; the message names the file and the entry."""

    default_code = "INVALID_MANIFEST"


@dataclass(frozen=True)
class RetrySpec:
    max_attempts: int = 1
    backoff_seconds: float = 0.0


@dataclass(frozen=True)
class NodePolicy:
    # Touches outside systems. With requires_approval, the worker runs it only after an
    # approval recorded in this run names it (approval node or payload "node").
    mutates: bool = False
    requires_approval: bool = False
    role: str = ""  # the role a reviewer needs to decide this node's approvals
    owner_role: str = ""  # a role the run's owner must hold for this node to run
    approval_timeout_seconds: float | None = None  # None: waits indefinitely
    retry: RetrySpec | None = None
    # What interrupt() returns once a reviewer decides (graphmesh/resume.py): "auto" picks
    # by the payload's shape (plain, HumanInterrupt, HITL request); "record" gives the
    # decision record {approved, decision, edited_value, comment, reviewer, expired}.
    resume: str = "auto"


@dataclass(frozen=True)
class Limits:
    max_steps: int = 25
    run_timeout_seconds: float = 600
    max_input_bytes: int = 262144
    max_state_bytes: int = 8 * 1024 * 1024  # serialized thread state after a step; 0: unlimited
    max_concurrent_runs: int = 0  # runs of the graph running/waiting/paused at once; 0: unlimited
    max_concurrent_runs_per_owner: int = 0  # the same, per owner; 0: unlimited
    max_queued_runs: int = 0  # runs of the graph queued at once (backpressure); 0: unlimited


@dataclass(frozen=True)
class Retention:
    """How long a graph's data lives (days; 0 keeps it forever). Enforced by the sweeper."""

    threads_days: float = 0  # finished threads: runs, checkpoints, approvals, events, spans
    checkpoints_keep: int = 0  # per thread, keep only the newest N checkpoints (>= 1); 0: all
    events_days: float = 0
    traces_days: float = 0
    reviews_days: float = 0  # decided approvals and their audit records


@dataclass(frozen=True)
class MigrationSpec:
    """Upgrades a checkpoint from state schema `from_schema` to its graph version's schema.

    Applied in this order: `rename_fields` (old state key -> new), `rename_nodes` (old
    node -> new, so a thread paused before the old node resumes before the new one),
    then `transform`, an optional `module:function` (or `./file.py:function`) that takes
    the renamed state dict and returns the new one (value changes, new defaults).
    """

    from_schema: str
    rename_fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    rename_nodes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    transform: str = ""

    def describe(self) -> list[str]:
        """The steps, readable: what an operator sees recorded on a migrated run."""
        steps = [f"field {a} -> {b}" for a, b in self.rename_fields.items()]
        steps += [f"node {a} -> {b}" for a, b in self.rename_nodes.items()]
        return steps + ([f"transform {self.transform}"] if self.transform else [])


@dataclass(frozen=True)
class GraphSpec:
    name: str
    version: str
    path: str
    description: str = ""
    state_schema_version: str = "1"
    prompt_version: str = ""
    model_route: str = ""
    tool_version: str = ""
    sync_eligible: bool = False
    # LangGraph's durability mode for this graph's runs (docs/decisions.md, "Durability"):
    # "async" (LangGraph's default: each step's checkpoint is written while the next step
    # runs), "sync" (written before the next step starts), "exit" (only when the run stops:
    # completes, fails, waits for approval or is handed back; a crash restarts it from its
    # last such checkpoint). "exit" is refused for graphs with `mutates` nodes.
    durability: str = "async"
    limits: Limits = Limits()
    nodes: Mapping[str, NodePolicy] = field(default_factory=lambda: MappingProxyType({}))
    weight: int = 100  # rollout weight; the highest weight serves new runs
    migrations: tuple[MigrationSpec, ...] = ()
    # Secrets its nodes may read by name (graphmesh.secrets.get_secret); never in state.
    secrets: tuple[str, ...] = ()
    # Extra types checkpoints of this graph may deserialise, as "module.Class" (LangGraph's
    # msgpack allow-list); anything else stays a plain value.
    serde_allowlist: tuple[str, ...] = ()
    retention: Retention = Retention()
    base_dir: str = ""  # manifest directory: resolves ./file.py paths and joins sys.path

    def versions(self) -> dict[str, str]:
        return {
            "graph_version": self.version,
            "prompt_version": self.prompt_version,
            "model_route": self.model_route,
            "tool_version": self.tool_version,
            "state_schema_version": self.state_schema_version,
        }


@dataclass(frozen=True)
class ProjectSpec:
    """A project's deploy-time settings, shared by all its graphs."""

    base_dir: str = ""
    paths: tuple[str, ...] = ()  # local dependencies (absolute directories), importable by graph code
    packages: tuple[str, ...] = ()  # dependencies named as requirements ("langchain-openai>=0.3")
    env_file: str = ""  # absolute path of a .env file
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    notices: tuple[str, ...] = ()  # what of the file graphmesh does not use, said once


# langgraph.json keys (LangGraph CLI's config schema) and what graphmesh does with each.
_LANGGRAPH_USED = {"graphs", "dependencies", "env"}
_LANGGRAPH_UNUSED = {
    "python_version": "graphs run on this environment's Python",
    "node_version": "JavaScript graphs are not supported",
    "pip_config_file": "install dependencies into this environment yourself",
    "pip_installer": "install dependencies into this environment yourself",
    "dockerfile_lines": "deploy/ builds graphmesh's own image",
    "base_image": "deploy/ builds graphmesh's own image",
    "image_distro": "deploy/ builds graphmesh's own image",
    "keep_pkg_tools": "deploy/ builds graphmesh's own image",
    "store": "graphmesh provides no long-term store yet",
    "checkpointer": "graphmesh always checkpoints to its own Postgres",
    "auth": "graphmesh authenticates with its own tokens (docs/security.md)",
    "http": "graphmesh serves gRPC, not LangGraph's HTTP app",
    "ui": "generative UI components are not served",
    "webhooks": "not built yet",
    "encryption": "not built yet",
}


class _Ctx:
    """Carries the file and entry being parsed so every error can name them."""

    def __init__(self, source: str, entry: str) -> None:
        self.source, self.entry = source, entry

    def fail(self, msg: str) -> ManifestError:
        return ManifestError(f"{self.source}: {self.entry}: {msg}")

    def keys(self, d: Any, allowed: set[str], what: str) -> dict:
        if not isinstance(d, dict):
            raise self.fail(f"{what} must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(map(str, d)) - allowed)
        if unknown:
            raise self.fail(f"unknown key(s) in {what}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        return d

    def text(self, d: dict, key: str, default: str | None = None, *, ident: bool = False) -> str:
        v = d.get(key, default)
        if v is None:
            raise self.fail(f"missing required key '{key}'")
        # YAML turns `version: 1` into an int; versions are labels, so accept it.
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            raise self.fail(f"'{key}' must be a string, got {type(v).__name__}")
        if ident and not _NAME.match(v):
            raise self.fail(f"'{key}' {v!r} must match {_NAME.pattern}")
        return v

    def flag(self, d: dict, key: str, default: bool) -> bool:
        v = d.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(f"'{key}' must be true or false, got {v!r}")
        return v

    def num(self, d: dict, key: str, default: Any, *, integer: bool = False,
            minimum: float = 0, nullable: bool = False) -> Any:
        v = d.get(key, default)
        if v is None and nullable:
            return None
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if not ok or isinstance(v, bool):
            kind = "an integer" if integer else "a number"
            raise self.fail(f"'{key}' must be {kind}{' or null' if nullable else ''}, got {v!r}")
        if v < minimum:
            raise self.fail(f"'{key}' must be >= {minimum}, got {v!r}")
        return v


_GRAPH_KEYS = {"name", "version", "path", "description", "state_schema_version", "prompt_version",
               "model_route", "tool_version", "sync", "limits", "nodes", "weight", "migrations", "secrets",
               "serde_allowlist", "retention", "durability"}
DURABILITY_MODES = ("async", "sync", "exit")
_LIMIT_KEYS = {"max_steps", "run_timeout_seconds", "max_input_bytes", "max_state_bytes", "max_concurrent_runs",
               "max_concurrent_runs_per_owner", "max_queued_runs"}
_NODE_KEYS = {"mutates", "requires_approval", "role", "owner_role", "approval_timeout_seconds", "retry", "resume"}
RESUME_SHAPES = ("auto", "plain", "human_interrupt", "hitl", "record")
_RETENTION_KEYS = {"threads_days", "checkpoints_keep", "events_days", "traces_days", "reviews_days"}


def _limits(c: _Ctx, d: Any) -> Limits:
    d = c.keys(d or {}, _LIMIT_KEYS, "limits")
    base = Limits()
    return Limits(
        max_steps=c.num(d, "max_steps", base.max_steps, integer=True, minimum=1),
        run_timeout_seconds=c.num(d, "run_timeout_seconds", base.run_timeout_seconds, minimum=0.001),
        max_input_bytes=c.num(d, "max_input_bytes", base.max_input_bytes, integer=True, minimum=1),
        max_state_bytes=c.num(d, "max_state_bytes", base.max_state_bytes, integer=True),
        max_concurrent_runs=c.num(d, "max_concurrent_runs", base.max_concurrent_runs, integer=True),
        max_concurrent_runs_per_owner=c.num(d, "max_concurrent_runs_per_owner",
                                            base.max_concurrent_runs_per_owner, integer=True),
        max_queued_runs=c.num(d, "max_queued_runs", base.max_queued_runs, integer=True),
    )


def _retention(c: _Ctx, d: Any) -> Retention:
    d = c.keys(d or {}, _RETENTION_KEYS, "retention")
    return Retention(
        threads_days=c.num(d, "threads_days", 0), checkpoints_keep=c.num(d, "checkpoints_keep", 0, integer=True),
        events_days=c.num(d, "events_days", 0), traces_days=c.num(d, "traces_days", 0),
        reviews_days=c.num(d, "reviews_days", 0))


def _names(c: _Ctx, d: dict, key: str, pattern: re.Pattern) -> tuple[str, ...]:
    v = d.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) and pattern.match(x) for x in v):
        raise c.fail(f"'{key}' must be a list of names matching {pattern.pattern}, got {v!r}")
    return tuple(v)


def _node(c: _Ctx, name: str, d: Any) -> NodePolicy:
    d = c.keys(d or {}, _NODE_KEYS, f"nodes.{name}")
    retry = None
    if d.get("retry") is not None:
        r = c.keys(d["retry"], {"max_attempts", "backoff_seconds"}, f"nodes.{name}.retry")
        retry = RetrySpec(c.num(r, "max_attempts", 1, integer=True, minimum=1),
                          float(c.num(r, "backoff_seconds", 0.0)))
    policy = NodePolicy(
        mutates=c.flag(d, "mutates", False),
        requires_approval=c.flag(d, "requires_approval", False),
        role=c.text(d, "role", ""),
        owner_role=c.text(d, "owner_role", ""),
        approval_timeout_seconds=c.num(d, "approval_timeout_seconds", None, minimum=0.001, nullable=True),
        retry=retry,
        resume=c.text(d, "resume", "auto"),
    )
    if policy.resume not in RESUME_SHAPES:
        raise c.fail(f"nodes.{name}: 'resume' must be one of {', '.join(RESUME_SHAPES)}, got {policy.resume!r}")
    if policy.role and not policy.requires_approval:
        raise c.fail(f"nodes.{name}: 'role' only applies with requires_approval: true")
    return policy


def _renames(c: _Ctx, d: dict, key: str) -> Mapping[str, str]:
    v = d.get(key) or {}
    if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) and a and b
                                          for a, b in v.items()):
        raise c.fail(f"migrations[].{key} must map old names to new names (strings), got {v!r}")
    if len(set(v.values())) != len(v):
        raise c.fail(f"migrations[].{key}: two old names map to the same new name")
    return MappingProxyType(dict(v))


def _migration(c: _Ctx, d: Any) -> MigrationSpec:
    d = c.keys(d, {"from_schema", "rename_fields", "rename_nodes", "transform"}, "migrations[]")
    transform = c.text(d, "transform", "")
    if transform and ":" not in transform:
        raise c.fail(f"migrations[].transform {transform!r} must look like 'module:function'")
    return MigrationSpec(c.text(d, "from_schema"), _renames(c, d, "rename_fields"),
                         _renames(c, d, "rename_nodes"), transform)


def _graph(c: _Ctx, d: Any, base_dir: str) -> GraphSpec:
    d = c.keys(d, _GRAPH_KEYS, "graph entry")
    name = c.text(d, "name", ident=True)
    c.entry = f"graph '{name}'"
    version = c.text(d, "version", ident=True)
    c.entry = f"graph '{name}' version '{version}'"
    path = c.text(d, "path")
    if ":" not in path:
        raise c.fail(f"'path' {path!r} must look like 'module:attribute' or './file.py:attribute'")
    nodes = d.get("nodes") or {}
    if not isinstance(nodes, dict):
        raise c.fail(f"'nodes' must be a mapping of node name -> policy, got {type(nodes).__name__}")
    migrations = d.get("migrations") or []
    if not isinstance(migrations, list):
        raise c.fail("'migrations' must be a list of {from_schema, rename_fields, rename_nodes, transform}")
    migs = tuple(_migration(c, m) for m in migrations)
    state_schema = c.text(d, "state_schema_version", "1")
    if dup := sorted({m.from_schema for m in migs if [n.from_schema for n in migs].count(m.from_schema) > 1}):
        raise c.fail(f"migrations: more than one migration from state schema {', '.join(dup)}")
    if any(m.from_schema == state_schema for m in migs):
        raise c.fail(f"migrations: from_schema {state_schema!r} is this version's own state schema")
    durability = c.text(d, "durability", "async")
    if durability not in DURABILITY_MODES:
        raise c.fail(f"'durability' must be one of {', '.join(DURABILITY_MODES)}, got {durability!r}")
    policies = {str(k): _node(c, str(k), v) for k, v in nodes.items()}
    if durability == "exit" and (mutating := sorted(n for n, p in policies.items() if p.mutates)):
        raise c.fail(f"durability 'exit' would re-run the mutating node(s) {', '.join(mutating)} after a crash: "
                     "use 'sync' or 'async' for a graph with outside effects")
    return GraphSpec(
        name=name, version=version, path=path,
        durability=durability,
        description=c.text(d, "description", ""),
        state_schema_version=state_schema,
        prompt_version=c.text(d, "prompt_version", ""),
        model_route=c.text(d, "model_route", ""),
        tool_version=c.text(d, "tool_version", ""),
        sync_eligible=c.flag(d, "sync", False),
        limits=_limits(c, d.get("limits")),
        nodes=MappingProxyType(policies),
        weight=c.num(d, "weight", 100, integer=True),
        migrations=migs,
        secrets=_names(c, d, "secrets", _SECRET_NAME),
        serde_allowlist=_names(c, d, "serde_allowlist", _QUALIFIED),
        retention=_retention(c, d.get("retention")),
        base_dir=base_dir,
    )


def _no_duplicates(specs: list[GraphSpec], source: str) -> list[GraphSpec]:
    seen: set[tuple[str, str]] = set()
    for s in specs:
        if (s.name, s.version) in seen:
            raise ManifestError(f"{source}: graph '{s.name}' version '{s.version}' is declared twice")
        seen.add((s.name, s.version))
    return specs


def parse_manifest(data: Any, source: str, base_dir: str) -> list[GraphSpec]:
    """Parse a loaded graphmesh.yaml document."""
    top = _Ctx(source, "top level")
    data = top.keys(data, {"graphs", "dependencies", "env"}, "manifest")
    entries = data.get("graphs")
    if not isinstance(entries, list) or not entries:
        raise top.fail("'graphs' must be a non-empty list of graph entries")
    specs = [_graph(_Ctx(source, f"graphs[{i}]"), e, base_dir) for i, e in enumerate(entries)]
    return _no_duplicates(specs, source)


def parse_langgraph_json(data: Any, source: str, base_dir: str) -> list[GraphSpec]:
    """Parse a langgraph.json's graphs; its deploy-time keys are parse_project's."""
    top = _Ctx(source, "top level")
    graphs = data.get("graphs") if isinstance(data, dict) else None
    if not isinstance(graphs, dict) or not graphs:
        raise top.fail("langgraph.json needs a non-empty 'graphs' object of name -> './file.py:attr'")
    specs = []
    for name, value in graphs.items():
        c = _Ctx(source, f"graph '{name}'")
        # Newer langgraph.json also allows {"path": ..., "description": ...}.
        entry = value if isinstance(value, dict) else {"path": value}
        entry = c.keys(entry, {"path", "description"}, "graph entry")
        specs.append(_graph(c, {"name": name, "version": "1", **entry}, base_dir))
    return _no_duplicates(specs, source)


def parse_project(data: Any, source: str, base_dir: str) -> ProjectSpec:
    """The project settings of a loaded graphmesh.yaml or langgraph.json document.

    `dependencies`: "." or "./path" entries are local directories (on sys.path in every
    graph process, and the `src/` of a src-layout package too); any other entry is a
    requirement that must already be installed. `env`: a .env path (relative to the
    file) or an object of name -> value.
    """
    from pathlib import Path

    c = _Ctx(source, "top level")
    if not isinstance(data, dict):
        raise c.fail("must be a mapping")
    deps = data.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) and d.strip() for d in deps):
        raise c.fail(f"'dependencies' must be a list of local paths or package names, got {deps!r}")
    paths, packages = [], []
    for dep in deps:
        if dep.startswith((".", "/")):
            folder = (Path(base_dir) / dep).resolve()
            if not folder.is_dir():
                raise c.fail(f"dependency {dep!r} is not a directory ({folder})")
            paths.append(str(folder))
            src = folder / "src"
            if src.is_dir() and any((folder / f).is_file() for f in ("pyproject.toml", "setup.py")):
                paths.append(str(src))
        else:
            packages.append(dep.strip())
    env, env_file = data.get("env") or {}, ""
    if isinstance(env, str):
        file = (Path(base_dir) / env).resolve()
        if not file.is_file():
            raise c.fail(f"'env' names {env!r}, which is not a file ({file})")
        env_file, env = str(file), {}
    elif not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float, bool))
                                              for k, v in env.items()):
        raise c.fail(f"'env' must be a .env file path or an object of NAME -> value, got {type(env).__name__}")
    notices = []
    if source.endswith(".json"):
        for key in sorted(set(data) - _LANGGRAPH_USED):
            why = _LANGGRAPH_UNUSED.get(key, "not a key graphmesh knows")
            notices.append(f"{source}: '{key}' is not used by graphmesh ({why})")
    return ProjectSpec(
        base_dir=base_dir, paths=tuple(dict.fromkeys(paths)), packages=tuple(packages), env_file=env_file,
        env=MappingProxyType({k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                              for k, v in env.items()}),
        notices=tuple(notices))
