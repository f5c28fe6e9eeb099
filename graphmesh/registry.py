"""The graph registry: which graphs and versions exist, their compiled code, and input checks.

Graph code is imported lazily, on first use of a version, so a worker only pays
for the versions it actually serves and a broken graph module fails its own runs
with a clear message instead of taking the whole process down at start-up
(`graphmesh up` and `graphmesh graphs check` load every graph first: graphmesh/preflight.py).

A graph's path may name a StateGraph builder, a compiled graph (its builder is compiled
again, so both get node guards, node policies, retries and spans, with graphmesh's
checkpointer in place of the graph's own), or a factory as the LangGraph server accepts:
a callable with no parameter (called once) or taking the run's config (called for every
run; it may be async, or an (async) context manager held for the run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import threading
import types
import typing
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable

import yaml

from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.guard import guarded
from graphmesh.manifest import (
    GraphSpec,
    Limits,
    ManifestError,
    MigrationSpec,
    NodePolicy,
    ProjectSpec,
    RetrySpec,
    parse_langgraph_json,
    parse_manifest,
    parse_project,
)
from graphmesh.project import activate, locate_manifest

__all__ = ["Registry", "GraphSpec", "Limits", "NodePolicy", "RetrySpec", "MigrationSpec", "MigrationStep",
           "ManifestError"]

_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
               "object": (dict,), "array": (list, tuple), "null": (type(None),)}
_PY_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


class MigrationStep(typing.NamedTuple):
    spec: MigrationSpec  # what to apply
    target: GraphSpec  # the version declaring it: the step ends at its state schema


class _Loaded(typing.NamedTuple):
    graph: Any  # compiled and guarded; for a per-run factory, the graph it made for the load checks
    schema: "_InputSchema | None"
    factory: Callable[[dict], Any] | None  # takes the run's config: called for every run


class _InputSchema(typing.NamedTuple):
    properties: dict[str, set[str] | None]  # key -> allowed JSON types (None: anything)
    required: frozenset[str]
    closed: bool  # unknown keys are errors


class Registry:
    def __init__(self, specs: list[GraphSpec], source: str = "", project: ProjectSpec | None = None) -> None:
        self.source = source
        self.project = project or ProjectSpec()
        self._specs = list(specs)
        self._compiled: dict[tuple[str, str], _Loaded] = {}
        self._lock = threading.Lock()  # one import/compile per version, even under a thread pool
        self._store: Any = None  # the long-term store graphs get (use_store); None: their own, if any

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> "Registry":
        path = Path(path).resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ManifestError(f"{path}: cannot read manifest: {e.strerror or e}") from e
        base = str(path.parent)
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            parse = parse_langgraph_json if path.suffix == ".json" else parse_manifest
            return cls(parse(data, str(path), base), str(path), parse_project(data, str(path), base))
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ManifestError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e

    @classmethod
    def default(cls) -> "Registry":
        """GRAPHMESH_CONFIG, else the working directory's manifest, else the bundled examples."""
        return cls.from_file(locate_manifest())

    # -- lookup --------------------------------------------------------------------------
    def specs(self) -> list[GraphSpec]:
        return list(self._specs)

    def names(self) -> list[str]:
        return list(dict.fromkeys(s.name for s in self._specs))

    def versions(self, name: str) -> list[GraphSpec]:
        """Every declared version of a graph, in manifest order."""
        found = [s for s in self._specs if s.name == name]
        if not found:
            raise NotFound(f"graph '{name}' is not registered (known: {', '.join(self.names()) or 'none'})",
                           code="GRAPH_NOT_FOUND")
        return found

    def get(self, name: str, version: str | None = None) -> GraphSpec:
        """A version's spec; with no version, the one new runs use (highest weight, ties -> latest)."""
        candidates = self.versions(name)
        if version is None or version == "":
            return max(reversed(candidates), key=lambda s: s.weight)  # max keeps the first of ties
        for s in candidates:
            if s.version == version:
                return s
        known = ", ".join(s.version for s in candidates)
        raise NotFound(f"graph '{name}' has no version '{version}' (known: {known})", code="GRAPH_VERSION_NOT_FOUND")

    # -- code ----------------------------------------------------------------------------
    def use_store(self, store: Any) -> None:
        """The LangGraph store (graphmesh/memory.py) that every graph bound by compiled() or
        graph_for_run() gets as its `store`, in place of one the graph was compiled with (as
        LangGraph's server does): nodes reach it as `store: BaseStore`, get_store() or runtime.store."""
        self._store = store

    def _bound(self, graph: Any, checkpointer: Any) -> Any:
        update = {"checkpointer": checkpointer}
        if self._store is not None:
            update["store"] = self._store
        return graph.copy(update=update)

    def compiled(self, name: str, version: str, *, checkpointer: Any = None) -> Any:
        """The compiled graph (cached). With a checkpointer, a cheap copy bound to it. For a
        per-run factory this is the graph made at load time: right for reading state and
        structure; runs use graph_for_run."""
        graph = self._load(self.get(name, version)).graph
        return graph if checkpointer is None else self._bound(graph, checkpointer)

    @asynccontextmanager
    async def graph_for_run(self, name: str, version: str, config: dict, *, checkpointer: Any):
        """The graph one run executes, bound to its checkpointer (and the store): the cached
        one, or what the version's factory makes from the run's config (held open for the run)."""
        spec = self.get(name, version)
        loaded = self._load(spec)
        if loaded.factory is None:
            yield self._bound(loaded.graph, checkpointer)
            return
        async with _made(loaded.factory, config, spec) as obj:
            yield self._bound(_compile(obj, spec), checkpointer)

    @property
    def notices(self) -> list[str]:
        """What of the manifest graphmesh does not use (said once, by whoever loads it)."""
        return list(self.project.notices)

    def preload(self) -> list[tuple[GraphSpec, str]]:
        """Imports and compiles every version now, off the request path; returns the versions
        that do not load, each with its error (a broken graph fails its own runs, not the process)."""
        errors = []
        for spec in self._specs:
            try:
                self._load(spec)
            except FailedPrecondition as exc:
                errors.append((spec, exc.message))
        return errors

    def node_names(self, name: str, version: str) -> list[str]:
        return [n for n in self.compiled(name, version).nodes if not n.startswith("__")]

    def migration_path(self, name: str, from_schema: str, to_schema: str) -> list[MigrationStep] | None:
        """The shortest chain of declared migrations taking state from one schema to another
        ([] when they are equal; None when no chain exists). Any version of the graph may
        contribute a step, so v3 reaches schema-1 threads through v2's migration."""
        if from_schema == to_schema:
            return []
        edges = [MigrationStep(m, s) for s in self.versions(name) for m in s.migrations]
        paths: dict[str, list[MigrationStep]] = {from_schema: []}
        frontier = [from_schema]
        while frontier:
            nxt = []
            for schema in frontier:
                for step in edges:
                    target = step.target.state_schema_version
                    if step.spec.from_schema == schema and target not in paths:
                        paths[target] = paths[schema] + [step]
                        nxt.append(target)
            frontier = nxt
        return paths.get(to_schema)

    def transform(self, step: "MigrationStep") -> Callable[[dict], dict] | None:
        """A migration step's state transform function, imported on first use."""
        if not step.spec.transform:
            return None
        return _import(step.spec.transform, step.target.base_dir)

    def _load(self, spec: GraphSpec) -> _Loaded:
        key = (spec.name, spec.version)
        if key in self._compiled:
            return self._compiled[key]
        with self._lock:
            if key not in self._compiled:
                activate(self.project)  # dependencies importable, .env loaded: before any graph code
                obj = _import(spec.path, spec.base_dir)
                factory = obj if _is_factory(obj) and _takes_config(obj) else None
                if factory is not None:
                    obj = _made_now(factory, spec)  # the graph for the checks below; runs make their own
                elif _is_factory(obj):
                    obj = _call_factory(obj, spec)
                graph = _compile(obj, spec)
                unknown = sorted(set(spec.nodes) - set(graph.nodes))
                if unknown:  # a typo in a node policy must not silently drop an approval
                    raise FailedPrecondition(
                        f"graph '{spec.name}' version '{spec.version}': node policies name unknown node(s) "
                        f"{', '.join(unknown)} (nodes: {', '.join(n for n in graph.nodes if n[:2] != '__')})",
                        code="GRAPH_LOAD_FAILED")
                _check_migrations(spec, graph)
                _check_serde_allowlist(spec)
                self._compiled[key] = _Loaded(graph, _input_schema(graph), factory)
        return self._compiled[key]

    # -- input ---------------------------------------------------------------------------
    def validate_input(self, spec: GraphSpec, value: object) -> dict:
        """Check a run's input; returns it with integral floats (from protobuf Struct) made ints."""
        where = f"graph '{spec.name}' version '{spec.version}'"
        if not isinstance(value, dict):
            raise InvalidArgument(f"input for {where} must be a JSON object, got {_json_type(value)}",
                                  code="INPUT_NOT_OBJECT")
        try:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"input for {where} is not JSON-serialisable: {e}", code="INVALID_INPUT") from e
        limit = spec.limits.max_input_bytes
        if size > limit:
            raise InvalidArgument(f"input for {where} is {size} bytes, over the limit max_input_bytes={limit}",
                                  code="INPUT_TOO_LARGE")
        schema = self._load(spec).schema
        if schema is None:
            return dict(value)
        problems, out = [], dict(value)
        for key in sorted(schema.required - value.keys()):
            problems.append(f"missing required key '{key}'")
        if schema.closed and (unknown := sorted(value.keys() - schema.properties.keys())):
            problems.append(f"unknown key(s) {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(schema.properties) or 'none'})")
        for key, v in value.items():
            allowed = schema.properties.get(key)
            if allowed is None or any(_is_type(v, t) for t in allowed):
                continue
            if "integer" in allowed and isinstance(v, float) and v.is_integer():
                out[key] = int(v)  # protobuf Struct carries every number as a double
                continue
            problems.append(f"key '{key}' must be {' or '.join(sorted(allowed))}, got {_json_type(v)}")
        if problems:
            raise InvalidArgument(f"invalid input for {where}: {'; '.join(problems)}", code="INVALID_INPUT")
        return out


def _check_migrations(spec: GraphSpec, graph: Any) -> None:
    """A migration that renames a node to one this version lacks would strand every thread
    paused there; refuse the version at load time instead."""
    for m in spec.migrations:
        if missing := sorted(set(m.rename_nodes.values()) - set(graph.nodes)):
            raise FailedPrecondition(
                f"graph '{spec.name}' version '{spec.version}': migration from state schema {m.from_schema} "
                f"renames nodes to {', '.join(missing)}, which this version does not have", code="GRAPH_LOAD_FAILED")
        if m.transform:
            _import(m.transform, spec.base_dir)


def _check_serde_allowlist(spec: GraphSpec) -> None:
    """A misspelt allow-list entry would silently turn the type into plain data when a
    checkpoint is read back; refuse the version at load time instead."""
    for name in spec.serde_allowlist:
        module, _, attr = name.rpartition(".")
        try:
            _import(f"{module}:{attr}", spec.base_dir)
        except FailedPrecondition as exc:
            raise FailedPrecondition(
                f"graph '{spec.name}' version '{spec.version}': serde_allowlist names {name!r}, which cannot be "
                f"imported ({exc.message})", code="GRAPH_LOAD_FAILED") from exc


def _import(path: str, base_dir: str) -> Any:
    """Resolve `module:attr` or `./file.py:attr` (relative to the manifest's directory)."""
    target, _, attr = path.rpartition(":")
    if base_dir and base_dir not in sys.path:
        sys.path.insert(0, base_dir)  # users' own modules live next to their manifest (as under langgraph dev)
    try:
        if target.endswith(".py") or target.startswith((".", "/")):
            file = (Path(base_dir) / target).resolve()
            # A stable name (not hash()): the same file maps to the same module in every process.
            mod_name = f"graphmesh_user_{hashlib.sha1(str(file).encode()).hexdigest()[:10]}_{file.stem}"
            module = sys.modules.get(mod_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(mod_name, file)
                if spec is None or spec.loader is None or not file.is_file():
                    raise FileNotFoundError(f"no such file {file}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module  # registered first so dataclasses/pickle resolve it
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(mod_name, None)
                    raise
        else:
            module = importlib.import_module(target)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    except Exception as e:
        raise FailedPrecondition(f"cannot load '{path}': {type(e).__name__}: {e}", code="GRAPH_LOAD_FAILED") from e


def _compile(obj: Any, spec: GraphSpec) -> Any:
    """A StateGraph, or a compiled graph's own builder, compiled with node guards and the
    manifest's retries; the graph's compile options carry over, its checkpointer does not
    (the worker binds one per run)."""
    from langgraph.graph import StateGraph
    from langgraph.pregel import Pregel

    if isinstance(obj, StateGraph):
        return guarded(_with_retries(obj, spec), spec.name).compile(name=spec.name)
    if isinstance(obj, Pregel):
        builder = getattr(obj, "builder", None)
        if not isinstance(builder, StateGraph):
            return obj  # a functional-API entrypoint: no nodes of its own to guard (README "Graphs")
        graph = guarded(_with_retries(builder, spec), spec.name).compile(
            cache=obj.cache, store=obj.store, interrupt_before=obj.interrupt_before_nodes,
            interrupt_after=obj.interrupt_after_nodes, debug=obj.debug, name=spec.name)
        # What was set on the compiled graph itself (with_config, step_timeout, retry_policy).
        return graph.copy(update={"config": obj.config, "step_timeout": obj.step_timeout,
                                  "retry_policy": obj.retry_policy})
    raise FailedPrecondition(f"'{spec.path}' is a {type(obj).__name__}, not a StateGraph, a compiled graph or a "
                             "factory returning one", code="GRAPH_LOAD_FAILED")


def _is_factory(obj: Any) -> bool:
    from langgraph.graph import StateGraph
    from langgraph.pregel import Pregel

    return callable(obj) and not isinstance(obj, (StateGraph, Pregel))


def _takes_config(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _factory_failed(spec: GraphSpec, e: Exception) -> FailedPrecondition:
    return FailedPrecondition(f"factory '{spec.path}' failed: {type(e).__name__}: {e}", code="GRAPH_LOAD_FAILED")


def _call_factory(factory: Any, spec: GraphSpec, *args: Any) -> Any:
    try:
        return factory(*args)
    except Exception as e:
        raise _factory_failed(spec, e) from e


@asynccontextmanager
async def _made(factory: Any, config: dict, spec: GraphSpec):
    """What a config-taking factory returns for one run: a graph, an awaitable of one, or
    an (async) context manager yielding one (entered for the run's duration)."""
    made = _call_factory(factory, spec, config)
    if inspect.isawaitable(made):
        try:
            made = await made
        except Exception as e:
            raise _factory_failed(spec, e) from e
    if hasattr(made, "__aenter__"):
        async with made as graph:
            yield graph
    elif hasattr(made, "__enter__"):
        with made as graph:
            yield graph
    else:
        yield made


def _made_now(factory: Any, spec: GraphSpec) -> Any:
    """The factory's graph for a default config, made on a thread of its own (this may run
    inside an event loop): what load-time checks, node names and input schemas read."""
    async def make() -> Any:
        async with _made(factory, {"configurable": {}, "metadata": {}}, spec) as graph:
            return graph

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


def _with_retries(builder: Any, spec: GraphSpec) -> Any:
    """Apply the manifest's node retry specs (they override the code's) on a copy of the builder."""
    from langgraph.types import RetryPolicy

    retries = {n: p.retry for n, p in spec.nodes.items() if p.retry and n in builder.nodes}
    if not retries:
        return builder
    clone = copy.copy(builder)  # the module's builder stays untouched for other versions
    clone.nodes = dict(builder.nodes)
    for node, r in retries.items():
        policy = RetryPolicy(max_attempts=r.max_attempts, initial_interval=r.backoff_seconds,
                             backoff_factor=2.0, jitter=False)  # default retry_on: transient errors only
        clone.nodes[node] = dataclasses.replace(builder.nodes[node], retry_policy=policy)
    return clone


def _input_schema(graph: Any) -> _InputSchema | None:
    builder = getattr(graph, "builder", None)
    # Required keys only count when the graph declares a separate input schema: a
    # plain state TypedDict lists every state key, yet LangGraph accepts partial input.
    explicit = builder is not None and builder.input_schema is not builder.state_schema
    try:
        js = graph.get_input_jsonschema()
    except Exception:
        # pydantic rejects typing.TypedDict on Python < 3.12; read the annotations instead.
        return _schema_from_hints(getattr(builder, "input_schema", None), explicit)
    if js.get("type") != "object" or "properties" not in js:
        return None  # not a dict-shaped input (e.g. functional API); only size is checked
    defs = js.get("$defs", {})
    props = {k: _allowed_types(p, defs) for k, p in js["properties"].items()}
    required = frozenset(js.get("required", ())) if explicit else frozenset()
    return _InputSchema(props, required, js.get("additionalProperties") is not True)


def _allowed_types(prop: dict, defs: dict) -> set[str] | None:
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
    if "type" in prop:
        return {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
    if "anyOf" in prop:
        parts = [_allowed_types(p, defs) for p in prop["anyOf"]]
        return None if any(p is None for p in parts) else set().union(*parts)
    return None


def _schema_from_hints(td: Any, explicit: bool) -> _InputSchema | None:
    if td is None or not hasattr(td, "__annotations__"):
        return None
    hints = typing.get_type_hints(td)
    props: dict[str, set[str] | None] = {}
    for key, hint in hints.items():
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        names = {_PY_TYPES.get(typing.get_origin(a) or a, "") if a is not type(None) else "null" for a in args}
        props[key] = None if "" in names else names
    required = frozenset(getattr(td, "__required_keys__", ())) if explicit else frozenset()
    return _InputSchema(props, required, True)


def _is_type(v: Any, json_type: str) -> bool:
    if isinstance(v, bool) and json_type in ("integer", "number"):
        return False  # bool is an int subclass in Python, not in JSON
    return isinstance(v, _JSON_TYPES.get(json_type, object))


def _json_type(v: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(v, name):
            return name
    return type(v).__name__
