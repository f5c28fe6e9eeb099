"""The one factory for gRPC channels and typed stubs, for the CLI, tests and benchmarks.

Credentials: a bearer token goes into every call's metadata. Which token: the one given
(argument, or the CLI's --token), else GRAPHMESH_TOKEN, else the token of the recorded
deployment (the CLI config that `graphmesh up` writes) whose address the channel talks to;
a token never travels to an address that no deployment records. With
GRAPHMESH_TLS_CA_FILE set (and GRAPHMESH_TLS_CLIENT_CERT_FILE / _KEY_FILE for mutual TLS)
channels use TLS.

The CLI config (GRAPHMESH_CLI_CONFIG, else $XDG_CONFIG_HOME/graphmesh/config.json) holds
every deployment `up` started, keyed by its data directory's absolute path, each with a
short name, its api and review addresses and its token, and which one was started last
("current"). The single-entry file of earlier releases ({"api", "token"}) still reads, as
one deployment named "default"; the current deployment's api and token are also written
at the top level, so an older CLI keeps working with the last mesh started."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import grpc

from graphmesh.errors import GraphmeshError
from graphmesh.rpc.tls import client_credentials
from graphmesh.v1 import (
    auth_service_pb2_grpc,
    graph_service_pb2_grpc,
    review_service_pb2_grpc,
    run_service_pb2_grpc,
    schedule_service_pb2_grpc,
    worker_service_pb2_grpc,
)

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
DEFAULT_API = "127.0.0.1:50051"
DEFAULT_REVIEW = "127.0.0.1:50052"
CONFIG_VERSION = 2
LEGACY_NAME = "default"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "::", "[::]"}


def config_path() -> Path:
    """The CLI's config file: GRAPHMESH_CLI_CONFIG, else ~/.config/graphmesh/config.json."""
    if os.environ.get("GRAPHMESH_CLI_CONFIG"):
        return Path(os.environ["GRAPHMESH_CLI_CONFIG"])
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "graphmesh" / "config.json"


# -- recorded deployments ------------------------------------------------------------------


class ConfigError(GraphmeshError):
    """A deployment name that is unknown or taken; the message says what to do."""

    default_code = "CLI_CONFIG"


def _split_address(address: str) -> tuple[str, str]:
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        return address.strip().lower(), ""
    return host.lower(), port


def same_address(a: str, b: str) -> bool:
    """Whether two host:port addresses reach the same server: equal, or the same port on
    this machine (127.0.0.1, localhost, ::1 and the wildcard addresses a local `up` binds)."""
    if not a or not b:
        return False
    (ha, pa), (hb, pb_) = _split_address(a), _split_address(b)
    if pa != pb_:
        return False
    return ha == hb or (ha in _LOCAL_HOSTS and hb in _LOCAL_HOSTS)


def connect_address(host: str, port: int | str) -> str:
    """The address a client dials for a server bound to host:port (a wildcard bind is
    reached on 127.0.0.1)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def default_name(data_dir: Path | str) -> str:
    """A short name for a data directory: its own name, or its parent's when it is a
    hidden directory such as ./.graphmesh (so ~/proj/.graphmesh is "proj")."""
    path = Path(data_dir)
    name = path.name
    if name.startswith(".") and path.parent.name:
        name = path.parent.name
    name = _NAME_CHARS.sub("-", name).strip("-.") or "mesh"
    return name


@dataclass
class Deployment:
    key: str  # the data directory's absolute path (legacy:<api> for the old single-entry file)
    name: str
    api: str
    review: str = ""
    token: str = ""
    auth: str = ""  # "token", "none", or "" when unknown (the old file)
    updated_at: str = ""

    def entry(self) -> dict:
        d = asdict(self)
        d.pop("key")
        return d


@dataclass
class CliConfig:
    deployments: dict[str, Deployment] = field(default_factory=dict)
    current: str = ""  # the key of the deployment started last (or chosen with `deployments use`)

    # reading and writing

    @classmethod
    def from_json(cls, data) -> CliConfig:
        """Both formats: {"deployments": {...}, "current": KEY} and the old {"api", "token"}."""
        if not isinstance(data, dict):
            return cls()
        if isinstance(data.get("deployments"), dict):
            found: dict[str, Deployment] = {}
            for key, entry in data["deployments"].items():
                if not isinstance(entry, dict) or not entry.get("api"):
                    continue
                found[key] = Deployment(
                    key=key, name=str(entry.get("name") or default_name(key)), api=str(entry["api"]),
                    review=str(entry.get("review") or ""), token=str(entry.get("token") or ""),
                    auth=str(entry.get("auth") or ""), updated_at=str(entry.get("updated_at") or ""))
            current = str(data.get("current") or "")
            return cls(found, current if current in found else "")
        if data.get("api") or data.get("token"):
            api = str(data.get("api") or DEFAULT_API)
            key = f"legacy:{api}"
            return cls({key: Deployment(key=key, name=LEGACY_NAME, api=api, token=str(data.get("token") or ""))}, key)
        return cls()

    def to_json(self) -> dict:
        data: dict = {"version": CONFIG_VERSION, "current": self.current,
                      "deployments": {k: d.entry() for k, d in self.deployments.items()}}
        cur = self.current_deployment()
        if cur is not None:  # what the single-entry format of earlier releases reads
            data["api"], data["token"] = cur.api, cur.token
        return data

    # lookups

    def current_deployment(self) -> Deployment | None:
        return self.deployments.get(self.current)

    def by_name(self, name: str) -> Deployment | None:
        for d in self.deployments.values():
            if d.name == name:
                return d
        # a data directory's path works as well as its name
        return self.deployments.get(str(Path(name).expanduser().absolute())) if name else None

    def require(self, name: str, path: Path | None = None) -> Deployment:
        found = self.by_name(name)
        if found is None:
            names = ", ".join(sorted(d.name for d in self.deployments.values())) or "none"
            where = f" in {path}" if path else ""
            raise ConfigError(f"no deployment named '{name}'{where} (recorded: {names}); "
                              f"`graphmesh up --data-dir DIR --name {name}` records one")
        return found

    def by_address(self, address: str, prefer: Deployment | None = None) -> Deployment | None:
        """The deployment whose api or review address this is: `prefer` if it matches,
        else the most recently started one that does."""
        if prefer is not None and (same_address(prefer.api, address) or same_address(prefer.review, address)):
            return prefer
        matches = [d for d in self.deployments.values()
                   if same_address(d.api, address) or same_address(d.review, address)]
        matches.sort(key=lambda d: (d.key == self.current, d.updated_at), reverse=True)
        return matches[0] if matches else None

    # changes

    def unique_name(self, wanted: str, key: str) -> str:
        taken = {d.name for k, d in self.deployments.items() if k != key}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}-{n}", n + 1
        return name

    def check_name(self, name: str, key: str) -> None:
        """Refuses a name that another data directory's deployment has."""
        other = self.by_name(name)
        if other is not None and other.key != key and other.name == name:
            raise ConfigError(f"deployment name '{name}' is already used by {other.key}; "
                              f"choose another --name, or `graphmesh deployments forget {name}` first")

    def record(self, *, key: str, api: str, review: str = "", token: str = "", auth: str = "",
               name: str | None = None, now: str | None = None) -> Deployment:
        """Adds or updates the deployment of data directory `key` and makes it current.
        Its name: `name` if given, else the one it had, else one made from the path.
        An old single-entry record for the same api address is replaced by it."""
        existing = self.deployments.get(key)
        if name:
            self.check_name(name, key)
        else:
            name = existing.name if existing else self.unique_name(default_name(key), key)
        for k, d in list(self.deployments.items()):
            if k.startswith("legacy:") and same_address(d.api, api):
                del self.deployments[k]
        deployment = Deployment(key=key, name=name, api=api, review=review, token=token, auth=auth,
                                updated_at=now or datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.deployments[key] = deployment
        self.current = key
        return deployment

    def use(self, name: str) -> Deployment:
        found = self.require(name)
        self.current = found.key
        return found

    def forget(self, name: str) -> Deployment:
        found = self.require(name)
        del self.deployments[found.key]
        if self.current == found.key:
            rest = sorted(self.deployments.values(), key=lambda d: d.updated_at, reverse=True)
            self.current = rest[0].key if rest else ""
        return found


def load_cli_config(path: Path | None = None) -> CliConfig:
    """The recorded deployments; an absent or unreadable file reads as none."""
    path = path or config_path()
    try:
        return CliConfig.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return CliConfig()


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def editing_cli_config(path: Path | None = None):
    """Read-modify-write of the CLI config under an exclusive lock (two `up`s at once do
    not lose each other's record); written atomically, owner-only."""
    import fcntl

    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(f"{path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        config = load_cli_config(path)
        yield config
        _write_private(path, config.to_json())
    finally:
        os.close(lock_fd)


def record_deployment(*, data_dir: Path | str, api: str, review: str = "", token: str = "", auth: str = "",
                      name: str | None = None, path: Path | None = None) -> tuple[Path, Deployment]:
    """What `graphmesh up` calls once its mesh is up: records (or updates) this data
    directory's deployment without touching the others', and makes it current."""
    path = path or config_path()
    with editing_cli_config(path) as config:
        deployment = config.record(key=str(Path(data_dir).absolute()), api=api, review=review, token=token,
                                   auth=auth, name=name)
    return path, deployment


def save_cli_config(api: str, token: str) -> Path:
    """Records a deployment with no data directory, keyed by its address (kept for callers
    of earlier releases; `graphmesh up` uses record_deployment)."""
    path = config_path()
    with editing_cli_config(path) as config:
        key = f"legacy:{api}"
        name = config.deployments[key].name if key in config.deployments else config.unique_name(LEGACY_NAME, key)
        config.deployments[key] = Deployment(key=key, name=name, api=api, token=token,
                                             updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        config.current = key
    return path


# -- which token ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenChoice:
    """A token and where it came from, for error messages (never print `token` itself)."""

    token: str
    source: str  # "--token", "GRAPHMESH_TOKEN", "the CLI config <path>, deployment <name>", ...


def token_label(token: str) -> str:
    """A token as it may be shown: its public prefix (gm_<token id>) or, for other
    tokens (JWTs), the first characters, plus a short sha256 fingerprint."""
    if not token:
        return "no token"
    digest = hashlib.sha256(token.encode()).hexdigest()[:8]
    parts = token.split("_")
    if token.startswith("gm_") and len(parts) >= 3:
        shown = f"{parts[0]}_{parts[1]}_"
    else:
        shown = token[:6]
    return f"token '{shown}…' (sha256 {digest})"


def describe_token(choice: TokenChoice) -> str:
    """E.g. "token 'gm_ab12cd34ef56_…' (sha256 1a2b3c4d) from GRAPHMESH_TOKEN", or
    "no token (no recorded deployment has address 10.0.0.5:50051)"."""
    if not choice.token:
        return f"no token ({choice.source})" if choice.source else "no token"
    return f"{token_label(choice.token)} from {choice.source}"


_override: TokenChoice | None = None


def use_token(choice: TokenChoice | None) -> None:
    """Makes every channel this process opens without an explicit token use `choice`
    (the CLI calls it once with the token it resolved; None restores the default)."""
    global _override
    _override = choice


def token_for(address: str | None = None, *, environ=None, config: CliConfig | None = None,
              path: Path | None = None) -> TokenChoice:
    """The token a channel to `address` sends when none is given: the CLI's (use_token),
    else GRAPHMESH_TOKEN, else the recorded deployment's with that address (the current
    deployment's when no address is given), else none."""
    if _override is not None and environ is None:
        return _override
    env = os.environ if environ is None else environ
    if env.get("GRAPHMESH_TOKEN"):
        return TokenChoice(env["GRAPHMESH_TOKEN"], "GRAPHMESH_TOKEN")
    path = path or config_path()
    config = load_cli_config(path) if config is None else config
    found = config.current_deployment() if address is None else config.by_address(address)
    if found is not None and found.token:
        return TokenChoice(found.token, f"the CLI config {path}, deployment {found.name}")
    if found is not None:
        return TokenChoice("", f"deployment {found.name} in {path} has none")
    return TokenChoice("", f"no recorded deployment has address {address}" if address else "")


def default_token(address: str | None = None) -> str:
    return token_for(address).token


# -- which address -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the CLI sends its calls, and why there."""

    api: str
    api_source: str  # "--api", "GRAPHMESH_API", "deployment NAME (...)", "the default"
    deployment: Deployment | None  # the recorded deployment that has this api address
    review: str
    review_source: str


def resolve_target(config: CliConfig, *, api_flag: str | None = None, deployment_flag: str | None = None,
                   review_flag: str | None = None, environ=None) -> Target:
    """The api (and review) address: --api, else GRAPHMESH_API, else the recorded deployment
    named by --deployment / GRAPHMESH_DEPLOYMENT, else the current one (started last, or
    chosen with `deployments use`), else 127.0.0.1:50051. A named deployment whose address
    differs from an --api / GRAPHMESH_API also given is an error, not a silent choice."""
    env = os.environ if environ is None else environ
    if deployment_flag:
        chosen, chosen_by = config.require(deployment_flag), "--deployment"
    elif env.get("GRAPHMESH_DEPLOYMENT"):
        chosen, chosen_by = config.require(env["GRAPHMESH_DEPLOYMENT"]), "GRAPHMESH_DEPLOYMENT"
    else:
        chosen, chosen_by = None, ""
    current = config.current_deployment()
    if api_flag:
        api, source = api_flag, "--api"
    elif env.get("GRAPHMESH_API"):
        api, source = env["GRAPHMESH_API"], "GRAPHMESH_API"
    elif chosen is not None:
        api, source = chosen.api, f"deployment {chosen.name} ({chosen_by})"
    elif current is not None:
        api, source = current.api, f"deployment {current.name} (the current one)"
    else:
        api, source = DEFAULT_API, "the default"
    if chosen is not None and not same_address(chosen.api, api):
        raise ConfigError(f"{chosen_by} {chosen.name} is the mesh at {chosen.api}, but {source} says {api}; "
                          f"give one of them")
    deployment = chosen or config.by_address(api, prefer=current)
    if review_flag:
        review, review_source = review_flag, "--review"
    elif env.get("GRAPHMESH_REVIEW"):
        review, review_source = env["GRAPHMESH_REVIEW"], "GRAPHMESH_REVIEW"
    elif deployment is not None and deployment.review:
        review, review_source = deployment.review, f"deployment {deployment.name}"
    else:
        review, review_source = DEFAULT_REVIEW, "the default"
    return Target(api, source, deployment, review, review_source)


def read_token_option(value: str) -> str:
    """--token VALUE, or --token @FILE (keeps the token out of the process list)."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the --token file: {exc}") from None
    return value.strip()


def resolve_token(target: Target, *, token_flag: str | None = None, environ=None,
                  path: Path | None = None) -> TokenChoice:
    """The token goes with the address: --token, else GRAPHMESH_TOKEN, else the token of the
    recorded deployment that has the target's api address, else none."""
    env = os.environ if environ is None else environ
    if token_flag:
        return TokenChoice(read_token_option(token_flag), "--token" + (f" {token_flag}" if token_flag[:1] == "@" else ""))
    if env.get("GRAPHMESH_TOKEN"):
        return TokenChoice(env["GRAPHMESH_TOKEN"], "GRAPHMESH_TOKEN")
    path = path or config_path()
    d = target.deployment
    if d is not None and d.token:
        return TokenChoice(d.token, f"the CLI config {path}, deployment {d.name}")
    if d is not None:
        why = "it runs without authentication" if d.auth == "none" else "it records none"
        return TokenChoice("", f"deployment {d.name} in the CLI config {path}: {why}")
    return TokenChoice("", f"no deployment recorded in {path} has address {target.api}")


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class _AioHeader:
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return details._replace(metadata=grpc.aio.Metadata(*(details.metadata or ()), self._header))


# grpc.aio files an interceptor under one call type only: one class per type.
class _AioBearerUnary(_AioHeader, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AioBearerStream(_AioHeader, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)


def _aio_bearer(token: str) -> list:
    return [_AioBearerUnary(token), _AioBearerStream(token)]


def _tls() -> grpc.ChannelCredentials | None:
    ca = os.environ.get("GRAPHMESH_TLS_CA_FILE")
    if not ca:
        return None
    return client_credentials(ca, os.environ.get("GRAPHMESH_TLS_CLIENT_CERT_FILE", ""),
                              os.environ.get("GRAPHMESH_TLS_CLIENT_KEY_FILE", ""))


def channel(address: str, token: str | None = None) -> grpc.Channel:
    token = default_token(address) if token is None else token
    creds = _tls()
    ch = (grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS) if creds
          else grpc.insecure_channel(address, options=CHANNEL_OPTIONS))
    return grpc.intercept_channel(ch, _Bearer(token)) if token else ch


@dataclass
class ApiClient:
    channel: grpc.Channel
    runs: run_service_pb2_grpc.RunServiceStub
    graphs: graph_service_pb2_grpc.GraphServiceStub
    # Optional so that a client built by hand with the first two stubs still works.
    schedules: schedule_service_pb2_grpc.ScheduleServiceStub | None = None

    def close(self) -> None:
        self.channel.close()


def api_client(address: str, token: str | None = None) -> ApiClient:
    ch = channel(address, token)
    return ApiClient(ch, run_service_pb2_grpc.RunServiceStub(ch), graph_service_pb2_grpc.GraphServiceStub(ch),
                     schedule_service_pb2_grpc.ScheduleServiceStub(ch))


def aio_channel(address: str, token: str | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel with the same credentials as channel()."""
    token = default_token(address) if token is None else token
    creds = _tls()
    interceptors = _aio_bearer(token) if token else None
    if creds:
        return grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)


def async_api_client(address: str, token: str | None = None) -> ApiClient:
    ch = aio_channel(address, token)
    return ApiClient(ch, run_service_pb2_grpc.RunServiceStub(ch), graph_service_pb2_grpc.GraphServiceStub(ch),
                     schedule_service_pb2_grpc.ScheduleServiceStub(ch))


def worker_stub(address: str, token: str | None = None) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel(address, token))


def review_stub(address: str, token: str | None = None) -> review_service_pb2_grpc.ReviewServiceStub:
    return review_service_pb2_grpc.ReviewServiceStub(channel(address, token))


def auth_stub(address: str, token: str | None = None) -> auth_service_pb2_grpc.AuthServiceStub:
    return auth_service_pb2_grpc.AuthServiceStub(channel(address, token))
