"""Shared fixtures: one mesh (or just Postgres + NATS) per test session, on free ports."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from graphmesh.grpc_fork import keep_grpc_fork_support_off

keep_grpc_fork_support_off()  # before grpc is imported: the session's meshes fork while it holds gRPC

import pytest  # noqa: E402

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
