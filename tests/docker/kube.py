"""Run a rendered Helm chart's pods as Docker containers: the docker tier's stand-in for a
kubelet, as far as one machine without Kubernetes allows.

Every Deployment and StatefulSet of the render becomes containers on one Docker network, one
per replica, each taking from its pod template: the image, command and args (command replaces
the entrypoint, args the command), env (values, ConfigMap and Secret references, the pod's
name and namespace from the downward API) and envFrom, the user and group, a read-only root
filesystem, dropped capabilities and no-new-privileges from the securityContext (fsGroup as
an extra group, and the owner of the pod's volumes), emptyDir volumes as tmpfs, ConfigMap and
Secret volumes as read-only files, volumeClaimTemplates as named volumes (that outlive the
container, as PVCs outlive pods), memory and CPU limits, the pod's name as its hostname, and
every headless Service that selects it (short name, cluster FQDN, and `<pod>.<service>`) as
network aliases. A ClusterIP Service is a container of its own under its names
(tests/docker/service_proxy.py: kube-proxy's part, forwarding each Service port to the target
port, by number or by the container port's name, of the pods it selects). Readiness is each
container's own probe (HTTP GET, gRPC health, exec), run inside it. A chart's `helm test` pods
run the same way, to completion.

Not emulated: NetworkPolicies (the network is flat), HPAs, PDBs, service accounts, ingress,
scheduling. Everything is labelled with the run's id and removed by `down()`.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL = "amem.e2e.run"
CLUSTER_DOMAIN = "svc.cluster.local"


class NotReady(RuntimeError):
    """A container did not pass its readiness probe in time, or exited; the message holds the
    probe and the container's log tail."""


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}...: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return int(float(match.group(1)) * units.get(match.group(2), 1))


def _cpus(value: str) -> str:
    value = str(value)
    return str(int(value[:-1]) / 1000) if value.endswith("m") else value


@dataclass
class Pod:
    name: str  # pod name: the Deployment's name, or `<statefulset>-<ordinal>`
    workload: dict[str, Any]
    labels: dict[str, str]
    claims: list[dict[str, Any]] = field(default_factory=list)  # volumeClaimTemplates

    @property
    def spec(self) -> dict[str, Any]:
        return self.workload["spec"]["template"]["spec"]


class Cluster:
    """One run of a render on Docker. `images` maps image names in the render to local ones."""

    def __init__(
        self,
        manifests: Iterable[dict],
        *,
        namespace: str,
        images: dict[str, str],
        proxy_image: str,
    ):
        self.docs = [d for d in manifests if d]
        self.namespace = namespace
        self.images = images
        self.proxy_image = proxy_image  # has python3: runs service_proxy.py
        self.run = uuid.uuid4().hex[:8]
        self.network = f"amem-e2e-{self.run}"
        self.files = Path(tempfile.mkdtemp(prefix=f"amem-e2e-{self.run}-"))
        self.containers: dict[str, str] = {}  # container name -> pod name
        self.pods: dict[str, Pod] = {}
        self._data = {
            (d["kind"], d["metadata"]["name"]): d
            for d in self.docs
            if d["kind"] in ("ConfigMap", "Secret")
        }

    # --- reading the render -----------------------------------------------------------

    def kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def _values(self, kind: str, name: str) -> dict[str, str]:
        doc = self._data.get((kind, name))
        if doc is None:
            return {}
        if kind == "ConfigMap":
            return {k: str(v) for k, v in (doc.get("data") or {}).items()}
        values = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
        values.update(doc.get("stringData") or {})
        return values

    def _env(self, container: dict, pod: Pod) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if ref := source.get("configMapRef"):
                env.update(self._values("ConfigMap", ref["name"]))
            if ref := source.get("secretRef"):
                env.update(self._values("Secret", ref["name"]))
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
                continue
            source = var.get("valueFrom") or {}
            if ref := source.get("configMapKeyRef"):
                value = self._values("ConfigMap", ref["name"]).get(ref["key"])
            elif ref := source.get("secretKeyRef"):
                value = self._values("Secret", ref["name"]).get(ref["key"])
            elif ref := source.get("fieldRef"):
                value = {"metadata.name": pod.name, "metadata.namespace": self.namespace}.get(
                    ref["fieldPath"]
                )
            else:
                value = None
            if value is None and not (ref or {}).get("optional", False):
                raise ValueError(f"{pod.name}: env {var['name']} refers to nothing: {source}")
            if value is not None:
                env[var["name"]] = value
        return env

    def _service_names(self, service: dict) -> list[str]:
        svc = service["metadata"]["name"]
        return [svc, f"{svc}.{self.namespace}", f"{svc}.{self.namespace}.{CLUSTER_DOMAIN}"]

    def _selects(self, service: dict, pod: Pod) -> bool:
        selector = service["spec"].get("selector") or {}
        return bool(selector) and all(pod.labels.get(k) == v for k, v in selector.items())

    def _aliases(self, pod: Pod) -> list[str]:
        names = [pod.name]
        for service in self.kind("Service"):
            if service["spec"].get("clusterIP") == "None" and self._selects(service, pod):
                svc = service["metadata"]["name"]
                names += self._service_names(service)
                names += [
                    f"{pod.name}.{svc}",
                    f"{pod.name}.{svc}.{self.namespace}.{CLUSTER_DOMAIN}",
                ]
        return list(dict.fromkeys(names))

    def _start_service(self, service: dict) -> None:
        """A ClusterIP Service: a forwarding container under the Service's names."""
        pods = [pod for pod in self.pods.values() if self._selects(service, pod)]
        if not pods:
            return  # no endpoints: the name does not resolve (Kubernetes would refuse)
        named = {
            port["name"]: port["containerPort"]
            for c in pods[0].spec["containers"]
            for port in c.get("ports") or []
            if "name" in port
        }
        forwards = []
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                if target not in named:
                    raise ValueError(f"Service {service['metadata']['name']}: no port {target}")
                target = named[target]
            forwards.append(f"{port['port']}:{target}")
        name = f"svc-{service['metadata']['name']}-{self.run}"
        args = ["run", "-d", "--name", name, "--label", f"{LABEL}={self.run}"]
        args += ["--network", self.network, "--user", "0:0"]
        for alias in self._service_names(service):
            args += ["--network-alias", alias]
        proxy = Path(__file__).with_name("service_proxy.py")
        args += ["--mount", f"type=bind,src={proxy},dst=/service_proxy.py,readonly"]
        args += ["--entrypoint", "python3", self.proxy_image, "/service_proxy.py"]
        docker(*args, ",".join(forwards), ",".join(pod.name for pod in pods))

    def _pods(self) -> list[Pod]:
        pods = []
        for workload in self.kind("Deployment") + self.kind("StatefulSet"):
            name = workload["metadata"]["name"]
            labels = workload["spec"]["template"]["metadata"].get("labels") or {}
            if workload["kind"] == "StatefulSet":
                for ordinal in range(workload["spec"].get("replicas", 1)):
                    claims = workload["spec"].get("volumeClaimTemplates") or []
                    pods.append(Pod(f"{name}-{ordinal}", workload, labels, claims))
            else:
                for replica in range(workload["spec"].get("replicas", 1)):
                    suffix = f"-{replica}" if replica else ""
                    pods.append(Pod(f"{name}{suffix}", workload, labels))
        return pods

    # --- running ------------------------------------------------------------------------

    def up(self, publish: dict[str, int] | None = None) -> None:
        """Create the network and start every pod's containers (not waiting for them).
        `publish`: pod name -> container port to publish on 127.0.0.1."""
        docker("network", "create", "--label", f"{LABEL}={self.run}", self.network)
        for pod in self._pods():
            self.pods[pod.name] = pod
            for container in pod.spec["containers"]:
                self._start(pod, container, (publish or {}).get(pod.name))
        for service in self.kind("Service"):
            if service["spec"].get("clusterIP") != "None":
                self._start_service(service)

    def _volume_args(self, pod: Pod, container: dict) -> list[str]:
        volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
        claims = {c["metadata"]["name"] for c in pod.claims}
        args: list[str] = []
        for mount in container.get("volumeMounts") or []:
            path, name = mount["mountPath"], mount["name"]
            if name in claims:
                volume = self.claim_volume(name, pod.name)
                args += ["--mount", f"type=volume,src={volume},dst={path}"]
                continue
            volume = volumes[name]
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                opts = f",tmpfs-size={_quantity_bytes(size)}" if size else ""
                args += ["--mount", f"type=tmpfs,dst={path}{opts},tmpfs-mode=1777"]
            elif "secret" in volume or "configMap" in volume:
                kind, ref = (
                    ("Secret", volume["secret"])
                    if "secret" in volume
                    else (
                        "ConfigMap",
                        volume["configMap"],
                    )
                )
                name_key = "secretName" if kind == "Secret" else "name"
                values = self._values(kind, ref[name_key])
                if not values and not ref.get("optional"):
                    raise ValueError(f"{pod.name}: volume {name}: no {kind} {ref[name_key]}")
                items = ref.get("items") or [{"key": k, "path": k} for k in values]
                directory = self.files / pod.name / name
                directory.mkdir(parents=True, exist_ok=True)
                directory.chmod(0o755)
                for item in items:
                    if item["key"] in values:
                        target = directory / item["path"]
                        target.write_text(values[item["key"]])
                        target.chmod(0o644)
                args += ["--mount", f"type=bind,src={directory},dst={path},readonly"]
            else:
                raise ValueError(f"{pod.name}: volume {name}: kind not emulated: {volume}")
        return args

    def claim_volume(self, claim: str, pod: str) -> str:
        """The named volume standing for the PVC `<claim>-<pod>`, created and given to the
        pod's fsGroup (as the kubelet does) on first use."""
        volume = f"{claim}-{pod}-{self.run}"
        if not docker("volume", "ls", "-q", "--filter", f"name=^{volume}$").strip():
            docker("volume", "create", "--label", f"{LABEL}={self.run}", volume)
            group = (self.pods[pod].spec.get("securityContext") or {}).get("fsGroup")
            if group is not None:
                image = next(iter(self.images.values()))
                docker(
                    "run",
                    "--rm",
                    "--user",
                    "0:0",
                    "--entrypoint",
                    "sh",
                    "-v",
                    f"{volume}:/v",
                    image,
                    "-c",
                    f"chgrp {group} /v && chmod 2775 /v",
                )
        return volume

    def _security_args(self, pod: Pod, container: dict) -> list[str]:
        pod_ctx = pod.spec.get("securityContext") or {}
        ctx = {**pod_ctx, **(container.get("securityContext") or {})}
        args: list[str] = []
        if "runAsUser" in ctx:
            args += ["--user", f"{ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}"]
        if pod_ctx.get("fsGroup") is not None:
            args += ["--group-add", str(pod_ctx["fsGroup"])]
        if ctx.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for cap in (ctx.get("capabilities") or {}).get("drop") or []:
            args += ["--cap-drop", cap]
        if ctx.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        return args

    def _resource_args(self, container: dict) -> list[str]:
        limits = (container.get("resources") or {}).get("limits") or {}
        args = []
        if "memory" in limits:
            args += ["--memory", str(_quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", _cpus(limits["cpu"])]
        return args

    def _start(self, pod: Pod, container: dict, publish: int | None, *, once: bool = False) -> str:
        name = f"{pod.name}-{container['name']}-{self.run}"
        image = self.images.get(container["image"], container["image"])
        args = ["run", "-d", "--name", name, "--label", f"{LABEL}={self.run}"]
        args += ["--network", self.network, "--hostname", pod.name]
        for alias in self._aliases(pod):
            args += ["--network-alias", alias]
        for key, value in self._env(container, pod).items():
            args += ["--env", f"{key}={value}"]
        args += self._volume_args(pod, container)
        args += self._security_args(pod, container)
        args += self._resource_args(container)
        if publish:
            args += ["--publish", f"127.0.0.1::{publish}"]
        if not once:
            args += ["--restart", "no"]
        command = container.get("command")
        if command:
            args += ["--entrypoint", command[0]]
        args.append(image)
        args += [*(command or [])[1:], *(container.get("args") or [])]
        docker(*args)
        self.containers[name] = pod.name
        return name

    def container(self, pod: str, container: str | None = None) -> str:
        spec = self.pods[pod].spec["containers"]
        return f"{pod}-{container or spec[0]['name']}-{self.run}"

    def published(self, pod: str, port: int) -> int:
        out = docker("port", self.container(pod), str(port)).strip().splitlines()[0]
        return int(out.rsplit(":", 1)[1])

    # --- probes ---------------------------------------------------------------------------

    def _probe_command(self, container: dict, probe: dict) -> list[str]:
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = f"http://127.0.0.1:{ports.get(get['port'], get['port'])}{get.get('path', '/')}"
            code = (
                "import sys, urllib.request; "
                f"sys.exit(urllib.request.urlopen({url!r}, timeout={timeout}).status >= 400)"
            )
            return ["python", "-c", code]
        if "grpc" in probe:
            target = f"127.0.0.1:{probe['grpc']['port']}"
            service = probe["grpc"].get("service", "")
            code = (
                "import grpc, sys\n"
                "from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g\n"
                f"channel = grpc.insecure_channel({target!r})\n"
                f"request = h.HealthCheckRequest(service={service!r})\n"
                f"reply = g.HealthStub(channel).Check(request, timeout={timeout})\n"
                "sys.exit(reply.status != h.HealthCheckResponse.SERVING)"
            )
            return ["python", "-c", code]
        if "exec" in probe:
            return list(probe["exec"]["command"])
        raise ValueError(f"probe not emulated: {probe}")

    def ready(self, pod: str, *, timeout: float | None = None) -> None:
        """Wait until each container of `pod` passes its readiness probe (or, without one, is
        running); NotReady with the probe and the log tail when it does not in time."""
        for container in self.pods[pod].spec["containers"]:
            name = self.container(pod, container["name"])
            probe = container.get("readinessProbe")
            startup = container.get("startupProbe") or {}
            limit = (
                timeout
                or startup.get("failureThreshold", 30) * startup.get("periodSeconds", 5) + 30
            )
            deadline = time.monotonic() + limit
            while True:
                state = json.loads(docker("inspect", "-f", "{{json .State}}", name))
                if not state["Running"]:
                    raise NotReady(f"{name} exited with {state['ExitCode']}\n{self.logs(name)}")
                if probe is None:
                    break
                done = subprocess.run(
                    ["docker", "exec", name, *self._probe_command(container, probe)],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                if done.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise NotReady(
                        f"{name} failed its readiness probe for {limit:.0f}s: {probe}\n"
                        f"{done.stderr.decode()[-500:]}\n{self.logs(name)}"
                    )
                time.sleep(1)

    def all_ready(self, timeout: float | None = None) -> None:
        for pod in self.pods:
            self.ready(pod, timeout=timeout)

    def logs(self, container: str, lines: int = 40) -> str:
        done = subprocess.run(
            ["docker", "logs", "--tail", str(lines), container],
            capture_output=True,
            text=True,
            check=False,
        )
        return (done.stdout + done.stderr)[-4000:]

    # --- helm test pods, faults, teardown ---------------------------------------------------

    def run_tests(self, timeout: float = 120) -> list[tuple[str, int, str]]:
        """Run the render's `helm test` pods to completion: (pod, exit code, log) each."""
        results = []
        for doc in self.kind("Pod"):
            if (doc["metadata"].get("annotations") or {}).get("helm.sh/hook") != "test":
                continue
            pod = Pod(doc["metadata"]["name"], {"spec": {"template": {"spec": doc["spec"]}}}, {})
            self.pods[pod.name] = pod
            [container] = doc["spec"]["containers"]
            name = self._start(pod, container, None, once=True)
            code = int(docker("wait", name, timeout=timeout).strip())
            results.append((pod.name, code, self.logs(name)))
        return results

    def kill(self, pod: str) -> None:
        docker("kill", self.container(pod))

    def start(self, pod: str) -> None:
        docker("start", self.container(pod))

    def down(self) -> None:
        names = docker("ps", "-aq", "--filter", f"label={LABEL}={self.run}").split()
        if names:
            docker("rm", "-f", "-v", *names, check=False)
        volumes = docker("volume", "ls", "-q", "--filter", f"label={LABEL}={self.run}").split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
        docker("network", "rm", self.network, check=False)
        shutil.rmtree(self.files, ignore_errors=True)
