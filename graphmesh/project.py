"""A project's deploy-time settings applied to the process that runs its graphs.

What LangGraph's own tooling does with langgraph.json before it imports a graph, done
here once per process (workers, the api for synchronous runs, `graphs check`):

- local `dependencies` go on sys.path, so `my_agent/agent.py` can `from my_agent.utils
  import ...` as it does under `langgraph dev`;
- named `dependencies` must already be installed here (graphmesh does not pip-install at
  start-up); a missing or mismatched one is an error naming what to install;
- `env` (a .env file, read with python-dotenv, or an object) fills the environment.
  Values already in the process environment win: a deployment's own settings override
  the project's file. Credentials among them are registered as secrets, so they are
  redacted from state, events, spans and logs (see graphmesh/secrets.py): a variable whose
  name says it holds one (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL, AUTH, PRIVATE, DSN,
  CERT, ...) or whose value looks like one (16+ characters mixing letters and digits, no
  spaces; a URL with a password). Plain settings (WEATHER_UNITS=metric, MODEL=gpt-4o,
  LANGSMITH_TRACING=true) stay readable: redacting every occurrence of such words
  everywhere would blank out ordinary text.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import threading
from pathlib import Path

from dotenv import dotenv_values
from packaging.requirements import InvalidRequirement, Requirement

from graphmesh import secrets
from graphmesh.config import manifest_from_env
from graphmesh.errors import FailedPrecondition

__all__ = ["activate", "is_credential", "locate_manifest", "missing_packages", "project_env"]

# The example graphs (graphs/), shipped inside the package so an installed graphmesh finds them.
BUNDLED_MANIFEST = Path(__file__).resolve().parent / "examples.yaml"

_CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|PASS$|PWD|CREDENTIAL|AUTH|PRIVATE|DSN|CERT|SIGNING|COOKIE|SESSION",
                              re.IGNORECASE)
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)
_lock = threading.Lock()
_active: set[int] = set()  # ids of project specs applied in this process


def project_env(project) -> dict[str, str]:
    """The project's variables: its .env file, then its inline `env` object over it."""
    values: dict[str, str] = {}
    if project.env_file:
        values.update({k: v for k, v in dotenv_values(project.env_file).items() if v is not None})
    values.update(project.env)
    return values


def is_credential(name: str, value: str) -> bool:
    """Whether a project variable is treated as a secret (see the module docstring)."""
    value = value.strip()
    if not value:
        return False
    if _CREDENTIAL_NAME.search(name) or _URL_WITH_PASSWORD.match(value):
        return True
    return (len(value) >= 16 and " " not in value and any(c.isdigit() for c in value)
            and any(c.isalpha() for c in value))


def missing_packages(project) -> list[str]:
    """One line per named dependency this environment lacks or has in the wrong version."""
    problems = []
    for text in project.packages:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            problems.append(f"dependency {text!r} is neither a local path ('./dir') nor a package name: {exc}")
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"dependency '{text}' is not installed in this environment ({sys.prefix}): "
                            f"pip install '{text}'")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(f"dependency '{text}' needs {req.name}{req.specifier}, but {installed} is installed: "
                            f"pip install '{text}'")
    return problems


def activate(project) -> None:
    """Applies the project to this process (once); raises FailedPrecondition (GRAPH_LOAD_FAILED)
    when a named dependency is missing, so its graphs fail to load with the reason."""
    if project is None or id(project) in _active:
        return
    with _lock:
        if id(project) in _active:
            return
        for path in reversed(project.paths):
            if path not in sys.path:
                sys.path.insert(0, path)
        for name, value in project_env(project).items():
            in_effect = os.environ.setdefault(name, value)
            for v in {value, in_effect}:
                if is_credential(name, v):
                    secrets.remember(v)
        _active.add(id(project))
    if problems := missing_packages(project):
        raise FailedPrecondition("; ".join(problems), code="GRAPH_LOAD_FAILED")


def locate_manifest(cwd: Path | None = None) -> Path:
    """GRAPHMESH_CONFIG, else graphmesh.yaml or langgraph.json in `cwd`, else the bundled examples."""
    if env := manifest_from_env():
        return Path(env)
    cwd = cwd or Path.cwd()
    for candidate in (cwd / "graphmesh.yaml", cwd / "langgraph.json", BUNDLED_MANIFEST):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no manifest found: set GRAPHMESH_CONFIG or add graphmesh.yaml to {cwd}")
