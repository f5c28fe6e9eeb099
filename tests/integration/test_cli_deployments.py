"""A user with more than one mesh: two `graphmesh up`s (their own data directories, one CLI
config) are both recorded; the CLI reaches each with its own token; an authentication error
names the token it sent and where it came from; `--as` with authentication on is refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from graphmesh.mesh import REPO_ROOT

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
RECORDED = re.compile(r"recorded as deployment '([^']+)'")


class Up:
    """One `graphmesh up` in the background, its output collected."""

    def __init__(self, data_dir: Path, env: dict, *extra: str) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [*CLI, "up", "--data-dir", str(data_dir), "--api-port", "0", "--review-port", "0", "--review-web-port", "0",
             "--worker-base-port", "0", "--workers", "1", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO_ROOT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "press Ctrl-C to stop" in line:
                self.ready.set()
        self.ready.set()  # it ended

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_up(self, timeout: float = 180) -> None:
        assert self.ready.wait(timeout), f"`up` did not come up:\n{self.output}"
        assert self.proc.poll() is None, f"`up` exited {self.proc.returncode}:\n{self.output}"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def name(self) -> str:
        return RECORDED.search(self.output).group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def meshes():
    root = Path(tempfile.mkdtemp(prefix="graphmesh-deployments-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHMESH_")}
    env["GRAPHMESH_CLI_CONFIG"] = str(root / "cli" / "config.json")  # not the real user's config
    # Both start at once: each records itself without losing the other's record.
    ups = [Up(root / "alpha" / ".graphmesh", env), Up(root / "second", env, "--name", "beta")]
    try:
        for u in ups:
            u.wait_up()
        yield root, env, ups
    finally:
        for u in ups:
            u.stop()
        shutil.rmtree(root, ignore_errors=True)


def cli(env: dict, *args: str, timeout: float = 60, **overrides: str) -> subprocess.CompletedProcess:
    run_env = {**env, **overrides}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=run_env, cwd=REPO_ROOT)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def deployments(env: dict) -> dict:
    return json.loads(ok(cli(env, "deployments", "--json")).stdout)


def test_both_ups_are_recorded_and_each_is_reached_with_its_own_token(meshes):
    root, env, (alpha, beta) = meshes
    assert (alpha.name, beta.name) == ("alpha", "beta")  # from the data dir's parent; from --name
    assert alpha.token != beta.token
    listed = deployments(env)
    by_name = {d["name"]: d for d in listed["deployments"]}
    assert set(by_name) == {"alpha", "beta"}
    assert by_name["alpha"]["data_dir"] == str(alpha.data_dir) and by_name["beta"]["data_dir"] == str(beta.data_dir)
    assert sum(d["current"] for d in listed["deployments"]) == 1
    for d in by_name.values():  # listing shows no token
        assert alpha.token not in json.dumps(listed) and beta.token not in json.dumps(listed)
        assert d["auth"] == "token" and d["token"].startswith("token 'gm_")
    config = json.loads(Path(env["GRAPHMESH_CLI_CONFIG"]).read_text())
    assert {d["token"] for d in config["deployments"].values()} == {alpha.token, beta.token}
    assert oct(Path(env["GRAPHMESH_CLI_CONFIG"]).stat().st_mode & 0o777) == "0o600"

    # A run made through one deployment exists there only.
    made = {}
    for d in (alpha, beta):
        created = json.loads(ok(cli(env, "--deployment", d.name, "runs", "create", "tiny", "--input",
                                    '{"text": "hello %s"}' % d.name, "--json")).stdout)
        made[d.name] = created["run_id"]
    for d, other in ((alpha, beta), (beta, alpha)):
        ok(cli(env, "--deployment", d.name, "runs", "stream", made[d.name]))
        missing = cli(env, "--deployment", other.name, "runs", "get", made[d.name])
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr, missing.stderr

    # `deployments use` selects; the plain CLI then talks to that one, with its token.
    for d in (alpha, beta):
        assert f"deployment {d.name}" in ok(cli(env, "deployments", "use", d.name)).stdout
        assert [x["name"] for x in deployments(env)["deployments"] if x["current"]] == [d.name]
        got = json.loads(ok(cli(env, "runs", "get", made[d.name], "--json")).stdout)
        assert got["run_id"] == made[d.name] and got["output"]["summary"] == f"2 words: hello {d.name}"
        assert "local-admin" in ok(cli(env, "whoami")).stdout
    # GRAPHMESH_DEPLOYMENT selects too.
    got = ok(cli(env, "runs", "get", made["alpha"], "--json", GRAPHMESH_DEPLOYMENT="alpha"))
    assert json.loads(got.stdout)["run_id"] == made["alpha"]

    # The token goes with the address: --api to alpha's address uses alpha's token although beta is current.
    alpha_api = {d["name"]: d["api"] for d in deployments(env)["deployments"]}["alpha"]
    got = ok(cli(env, "--api", alpha_api, "runs", "get", made["alpha"], "--json"))
    assert json.loads(got.stdout)["run_id"] == made["alpha"]
    # A deployment that contradicts the address given is an error, not a guess.
    clash = cli(env, "--deployment", "beta", "--api", alpha_api, "runs", "list")
    assert clash.returncode == 2 and "--deployment beta" in clash.stderr and alpha_api in clash.stderr


def test_up_says_how_to_reach_it_and_a_taken_name_is_refused(meshes):
    root, env, (alpha, beta) = meshes
    for u in (alpha, beta):
        assert f"graphmesh --deployment {u.name} ..." in u.output
        assert f"export GRAPHMESH_TOKEN=$(cat {u.data_dir / 'admin-token'})" in u.output
    # the printed export works: GRAPHMESH_TOKEN with the deployment's own address
    assert "local-admin" in ok(cli(env, "--deployment", "alpha", "whoami", GRAPHMESH_TOKEN=alpha.token)).stdout
    taken = cli(env, "up", "--data-dir", str(root / "third"), "--name", "alpha", "--api-port", "0",
                "--review-port", "0", "--review-web-port", "0", "--worker-base-port", "0", "--workers", "1")
    assert taken.returncode == 2, taken.stdout + taken.stderr
    assert "'alpha' is already used by" in taken.stdout and "starting graphmesh" not in taken.stdout
    assert not (root / "third").exists()


def test_an_auth_error_names_the_token_and_its_source(meshes):
    root, env, (alpha, beta) = meshes
    # GRAPHMESH_TOKEN wins over the recorded token: beta's token sent to alpha.
    wrong = cli(env, "--deployment", "alpha", "runs", "list", GRAPHMESH_TOKEN=beta.token)
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr
    assert f"token '{beta.token[:16]}…'" in wrong.stderr and "from GRAPHMESH_TOKEN" in wrong.stderr
    assert beta.token not in wrong.stderr
    assert "deployment alpha records another token" in wrong.stderr

    # A recorded token that no longer works: the message names the CLI config and deployment.
    stale = root / "stale-config.json"
    config = json.loads(Path(env["GRAPHMESH_CLI_CONFIG"]).read_text())
    bogus = "gm_000000000000_" + "x" * 43
    for entry in config["deployments"].values():
        entry["token"] = bogus
    stale.write_text(json.dumps(config))
    refused = cli(env, "--deployment", "alpha", "runs", "list", GRAPHMESH_CLI_CONFIG=str(stale))
    assert refused.returncode == 1 and "INVALID_TOKEN" in refused.stderr
    assert f"from the CLI config {stale}, deployment alpha" in refused.stderr and bogus not in refused.stderr

    # No token at all: an address no deployment records.
    alpha_api = {d["name"]: d["api"] for d in deployments(env)["deployments"]}["alpha"]
    none = cli(env, "--api", alpha_api, "runs", "list", GRAPHMESH_CLI_CONFIG=str(root / "empty.json"))
    assert none.returncode == 1 and "MISSING_TOKEN" in none.stderr
    assert "the CLI sent no token (no deployment recorded in" in none.stderr and alpha_api in none.stderr


def test_as_with_authentication_on_is_refused(meshes):
    root, env, (alpha, beta) = meshes
    run_id = json.loads(ok(cli(env, "--deployment", "alpha", "runs", "create", "tiny", "--input", '{"text": "x"}',
                               "--json")).stdout)["run_id"]
    for args in (("runs", "cancel", run_id, "--as", "mallory"),
                 ("approvals", "approve", "00000000-0000-0000-0000-000000000000", "--as", "mallory"),
                 ("graphs", "disable-node", "tiny", "count", "--reason", "r", "--as", "mallory")):
        refused = cli(env, "--deployment", "alpha", *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "--as mallory cannot be used with authentication on" in refused.stderr
        assert "local-admin" in refused.stderr and alpha.token not in refused.stderr
    # nothing was changed: the graph has no disabled node
    graph = json.loads(ok(cli(env, "--deployment", "alpha", "graphs", "show", "tiny", "--json")).stdout)
    assert not graph.get("disabled_nodes")
    # --as naming the token's own principal is no contradiction
    same = cli(env, "--deployment", "alpha", "runs", "cancel", run_id, "--as", "local-admin")
    assert "cannot be used with authentication on" not in same.stderr
    # --as without a token: the server's refusal says what --as does
    alpha_api = {d["name"]: d["api"] for d in deployments(env)["deployments"]}["alpha"]
    bare = cli(env, "--api", alpha_api, "runs", "cancel", run_id, "--as", "mallory",
               GRAPHMESH_CLI_CONFIG=str(root / "empty.json"))
    assert bare.returncode == 1 and "UNAUTHENTICATED" in bare.stderr
    assert "--as mallory names the caller only on a mesh started with --auth none" in bare.stderr
