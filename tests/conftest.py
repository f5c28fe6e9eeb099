"""Shared fixtures: one mesh (or just Postgres + NATS) per test session, on free ports."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from graphmesh.grpc_fork import keep_grpc_fork_support_off

keep_grpc_fork_support_off()  # before grpc is imported: the session's meshes fork while it holds gRPC

import pytest  # noqa: E402

from figures_report import FIGURES, FIGURES_FILE, LINES, Figures, format_table  # noqa: E402
from graphmesh.embedded import EmbeddedNats, EmbeddedPostgres
from graphmesh.mesh import Mesh, MeshConfig


@dataclass
class Backends:
    postgres: EmbeddedPostgres
    nats: EmbeddedNats

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def nats_url(self) -> str:
        return self.nats.url


def _data_root(tmp_path_factory, name: str) -> Path:
    """A data directory the embedded Postgres user can always traverse.

    As root, Postgres runs as another user, and every pytest session that starts on this
    machine chmods /tmp/pytest-of-root back to 0700, which would lock a running Postgres
    out of its own data dir. So root gets a plain /tmp directory instead.
    """
    if os.geteuid() == 0:
        return Path(tempfile.mkdtemp(prefix=f"graphmesh-{name}-"))
    return tmp_path_factory.mktemp(name)


def _remove(root: Path, tmp_path_factory) -> None:
    if not root.is_relative_to(tmp_path_factory.getbasetemp()):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_pg_nats(tmp_path_factory) -> Backends:
    """Postgres + JetStream only, for tests of the store and the bus without services."""
    root = _data_root(tmp_path_factory, "backends")
    backends = Backends(EmbeddedPostgres(root / "postgres", fast=True), EmbeddedNats(root / "nats"))
    try:
        backends.postgres.start()
        backends.nats.start()
        yield backends
    finally:
        backends.nats.stop()
        backends.postgres.stop()
        _remove(root, tmp_path_factory)


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> Mesh:
    """The whole mesh: embedded Postgres + NATS, api, review and two workers."""
    root = _data_root(tmp_path_factory, "mesh")
    config = MeshConfig(
        data_dir=root,
        api_port=0,
        review_port=0,
        worker_base_port=0,
        workers=2,
        fast_postgres=True,
        auth="none",  # development auth: tests name callers with gm-principal; test_auth.py uses tokens
    )
    m = Mesh(config)
    try:
        m.start()  # cleans up after itself if a service fails to come up
        yield m
    finally:
        m.stop()
        _remove(root, tmp_path_factory)


# -- figures at the end of the run (tests/figures_report.py) ---------------------------------

def pytest_sessionfinish(session):
    out = getattr(session.config, "workeroutput", None)
    if out is not None:  # a pytest-xdist worker: its figures go to the controller
        out["fault_figures"] = [asdict(f) for f in session.config.stash.get(FIGURES, [])]
        out["fault_figures_file"] = session.config.stash.get(FIGURES_FILE, "")
        out["figure_lines"] = list(session.config.stash.get(LINES, []))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller: a worker finished; keep its figures."""
    out = getattr(node, "workeroutput", None) or {}
    stash = node.config.stash
    stash.setdefault(FIGURES, []).extend(Figures(**f) for f in out.get("fault_figures", []))
    stash.setdefault(LINES, []).extend(out.get("figure_lines", []))
    if out.get("fault_figures_file"):  # <session>/popen-gwN/fault_figures.txt -> <session>/fault_figures.txt
        stash[FIGURES_FILE] = str(Path(out["fault_figures_file"]).parent.parent / "fault_figures.txt")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "workeroutput", None) is not None:
        return
    lines = config.stash.get(LINES, [])
    if lines:
        terminalreporter.write_sep("=", "figures")
        for line in lines:
            terminalreporter.write_line(line)
    figures = config.stash.get(FIGURES, None)
    if not figures:
        return
    table = format_table(figures)
    terminalreporter.write_sep("=", "fault-injection figures")
    for line in table:
        terminalreporter.write_line(line)
    path = config.stash.get(FIGURES_FILE, None)
    if path:
        try:
            with open(path, "w") as out:
                out.write("\n".join(table) + "\n")
            terminalreporter.write_line(f"(also written to {path})")
        except OSError:
            pass
