"""The Helm chart under every scenario of charts/amem/ci/: lint, strict schema validation,
policy checks, and the rules a production install relies on."""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest

from tests.chart.conftest import (
    CHART,
    by_kind,
    helm,
    pod_specs,
    rendered,
    rendered_text,
    tool,
)


def test_helm_lint_strict(scenario):
    args = ["lint", "--strict", str(CHART)]
    from tests.chart.conftest import SCENARIOS

    if SCENARIOS[scenario] is not None:
        args += ["-f", str(SCENARIOS[scenario])]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_are_valid_kubernetes(scenario, tmp_path):
    path = tmp_path / "manifests.yaml"
    path.write_text(rendered_text(scenario))
    result = subprocess.run(
        [tool("AMEM_KUBERNETES_VALIDATE"), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_finds_nothing_unjustified(scenario, tmp_path):
    (tmp_path / "manifests.yaml").write_text(rendered_text(scenario))
    result = subprocess.run(
        [
            tool("AMEM_CHECKOV"),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 100
    for skip in report["results"]["skipped_checks"]:
        assert len(skip.get("check_result", {}).get("suppress_comment", "")) > 20, skip


def test_gpu_resources_only_on_embedding_and_only_when_enabled():
    for scenario in ("defaults", "gpu-values"):
        gpu = scenario == "gpu-values"
        for name, pod in pod_specs(rendered(scenario)).items():
            spec = pod["spec"]
            wants = gpu and name.endswith("-embedding")
            limits = [c["resources"].get("limits", {}) for c in spec["containers"]]
            assert any("nvidia.com/gpu" in lim for lim in limits) == wants, (scenario, name)
            keys = {t.get("key") for t in spec.get("tolerations", [])}
            assert ("nvidia.com/gpu" in keys) == wants, (scenario, name)
            assert ("runtimeClassName" in spec) == wants, (scenario, name)
            if wants:
                assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
                assert spec["containers"][0]["image"].endswith("-cuda")


def test_kind_profile_schedules_embedding_on_the_tainted_pool():
    pod = pod_specs(rendered("k8s-values-kind"))["amem-embedding"]["spec"]
    assert pod["nodeSelector"] == {"amem.dev/pool": "gpu"}
    assert pod["tolerations"][0]["key"] == "amem.dev/pool"
    assert pod["containers"][0]["imagePullPolicy"] == "Never"
    assert pod["containers"][0]["image"].endswith("-cpu")


def test_no_replicas_where_an_hpa_scales(scenario):
    docs = rendered(scenario)
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in by_kind(docs, kind).items():
            assert ("replicas" in workload["spec"]) == (name not in scaled), (scenario, name)
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] in by_kind(docs, target["kind"])


def test_hpa_scenarios():
    names = lambda s: set(by_kind(rendered(s), "HorizontalPodAutoscaler"))  # noqa: E731
    assert names("defaults") == {"amem-gateway", "amem-embedding"}
    assert names("hpa-off-values") == set()
    assert "amem-evolution" in names("evolution-hpa-values")
    hpa = by_kind(rendered("evolution-hpa-values"), "HorizontalPodAutoscaler")["amem-evolution"]
    assert {
        "type": "Pods",
        "pods": {
            "metric": {"name": "amem_evolution_queue_depth"},
            "target": {"type": "AverageValue", "averageValue": "100"},
        },
    } in hpa["spec"]["metrics"]


def test_no_secret_value_outside_secrets():
    text = rendered_text("ingress-tls-values")
    docs = rendered("ingress-tls-values")
    secret_values = ["sk-test-not-a-real-key"]
    [secret] = by_kind(docs, "Secret").values()
    keys = json.loads(base64.b64decode(secret["data"]["api-keys.json"]))
    secret_values.append(keys["default"])
    assert keys["team-a"].startswith("sha256:")
    assert base64.b64decode(secret["data"]["llm-api-key"]).decode() == "sk-test-not-a-real-key"
    for value in secret_values:
        assert value not in text  # only base64 inside the Secret
    for pod in pod_specs(docs).values():
        for container in pod["spec"]["containers"]:
            for env in container.get("env", []):
                assert "valueFrom" not in env or "secretKeyRef" not in env["valueFrom"]


def test_existing_secret_is_used_and_none_is_created():
    docs = rendered("existing-secret-values")
    assert by_kind(docs, "Secret") == {}
    volumes = pod_specs(docs)["amem-gateway"]["spec"]["volumes"]
    assert {
        "name": "api-keys",
        "secret": {
            "secretName": "my-amem-keys",
            "items": [{"key": "api-keys.json", "path": "api-keys.json"}],
        },
    } in volumes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "secrets.existingSecret=x"], "secrets.existingSecret is set"),
        (["--set", "embedding.gpu.enabled=true"], "variant=cuda"),
        (["--set", "secrets.generateDefaultKey=false"], "no API keys"),
        (["--set", "gateway.replicas=0"], "minimum"),
        (["--set", "embedding.backend=gpu"], "backend"),
    ],
)
def test_contradictory_or_invalid_values_fail(values, message):
    result = helm("template", "amem", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_container_is_hardened_and_probed(scenario):
    docs = rendered(scenario)
    for name, pod in pod_specs(docs).items():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if name != "amem-test":
                assert "/tmp" in mounts, name  # writable scratch under a read-only root
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert probe in c, (name, probe)
        if pod.get("kind") != "Pod":
            annotations = pod["metadata"].get("annotations", {})
            if not name.endswith("chromadb"):
                assert "checksum/config" in annotations, name


def test_grpc_services_are_probed_natively_and_reached_through_headless_services():
    docs = rendered("defaults")
    pods = pod_specs(docs)
    for name in ("amem-embedding", "amem-evolution"):
        container = pods[name]["spec"]["containers"][0]
        assert "grpc" in container["readinessProbe"] and "grpc" in container["startupProbe"]
    [config] = by_kind(docs, "ConfigMap").values()
    services = by_kind(docs, "Service")
    for key in (
        "AMEM_EMBEDDING_TARGET",
        "AMEM_EVOLUTION_TARGET",
        "AMEM_EVOLUTION_EMBEDDING_TARGET",
    ):
        target = config["data"][key]
        assert target.startswith("dns:///"), key
        service = target.removeprefix("dns:///").split(":")[0]
        assert services[service]["spec"]["clusterIP"] == "None", key
    assert (
        pods["amem-gateway"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
        == "/readyz"
    )


def test_chromadb_statefulset_keeps_its_data():
    sts = by_kind(rendered("defaults"), "StatefulSet")["amem-chromadb"]
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert (
        sts["spec"]["template"]["spec"]["containers"][0]["image"]
        == "docker.io/chromadb/chroma:1.5.9"
    )
    assert (
        by_kind(rendered("defaults"), "Service")["amem-chromadb-headless"]["spec"]["clusterIP"]
        == "None"
    )


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_select_the_pods_they_mean():
    docs = rendered("defaults")
    pods = {name: p["metadata"]["labels"] for name, p in pod_specs(docs).items()}
    policies = by_kind(docs, "NetworkPolicy")
    component = {name: labels["app.kubernetes.io/component"] for name, labels in pods.items()}

    def selected(selector):
        return {component[n] for n, labels in pods.items() if _matches(selector, labels)}

    assert selected(policies["amem-default-deny"]["spec"]["podSelector"]) == set(component.values())

    def allowed_from(policy: str) -> set[str]:
        sources = set()
        for rule in policies[policy]["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    sources |= selected(peer["podSelector"])
                else:
                    sources.add("outside")
        return sources

    for name, policy in policies.items():
        if name != "amem-default-deny":
            assert len(selected(policy["spec"]["podSelector"])) == 1, name
    assert allowed_from("amem-chromadb") == {"gateway", "evolution"}
    assert allowed_from("amem-gateway") == {"outside", "test"}
    assert allowed_from("amem-embedding") == {"gateway", "evolution"}
    assert allowed_from("amem-evolution") == {"gateway", "evolution"}


def test_ingress_with_tls():
    [ingress] = by_kind(rendered("ingress-tls-values"), "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "amem-tls", "hosts": ["amem.example.com"]}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "amem-gateway", "port": {"name": "http"}}
    assert by_kind(rendered("defaults"), "Ingress") == {}


def test_helm_test_hook_stores_and_finds_a_memory():
    [pod] = [d for d in rendered("defaults") if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert script.count("curl -fsS") == 3  # -f: any HTTP error fails the test
    assert "/v1/memories/search" in script


def test_network_policies_can_be_left_to_the_cluster():
    out = helm("template", "amem", str(CHART), "--set", "networkPolicy.enabled=false").stdout
    assert "kind: NetworkPolicy" not in out
    assert "kind: NetworkPolicy" in rendered_text("defaults")


def test_replicas_spread_over_nodes_and_zones_by_default():
    pods = pod_specs(rendered("defaults"))
    for name in ("amem-gateway", "amem-embedding", "amem-evolution"):
        constraints = pods[name]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        }
        labels = pods[name]["metadata"]["labels"]
        for c in constraints:
            assert (
                _matches(c["labelSelector"], labels) and c["whenUnsatisfiable"] == "ScheduleAnyway"
            )


def test_tracing_configures_every_service_and_opens_egress_to_the_collector():
    docs = rendered("tracing-values")
    config = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert config["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert config["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    policies = by_kind(docs, "NetworkPolicy")
    for component in ("gateway", "embedding", "evolution"):
        egress = policies[f"amem-{component}"]["spec"]["egress"]
        to_collector = [r for r in egress if {"protocol": "TCP", "port": 4317} in r["ports"]]
        assert to_collector, component
        assert to_collector[0]["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "observability"
        }
    # Without a collector nothing is exported and the embedding service reaches nowhere.
    defaults = rendered("defaults")
    assert (
        "OTEL_EXPORTER_OTLP_ENDPOINT"
        not in next(iter(by_kind(defaults, "ConfigMap").values()))["data"]
    )
    assert by_kind(defaults, "NetworkPolicy")["amem-embedding"]["spec"]["egress"] == []


def test_backup_cronjob_to_s3_and_to_a_volume():
    docs = rendered("backup-s3-values")
    job = by_kind(docs, "CronJob")["amem-backup"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][3:] == ["backup", "s3://acme-amem-backups/prod", "--keep", "14"]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in container["env"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    policies = by_kind(docs, "NetworkPolicy")
    egress_ports = [
        p["port"] for r in policies["amem-backup"]["spec"]["egress"] for p in r["ports"]
    ]
    assert 443 in egress_ports
    chroma_from = policies["amem-chromadb"]["spec"]["ingress"][0]["from"]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == "backup"
        for p in chroma_from
    )
    assert "PersistentVolumeClaim" not in {d["kind"] for d in docs if d["kind"] != "StatefulSet"}

    docs = rendered("backup-volume-values")
    job = by_kind(docs, "CronJob")["amem-backup"]
    assert job["spec"]["timeZone"] == "Europe/Berlin"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][4] == "/backups"
    claim = by_kind(docs, "PersistentVolumeClaim")["amem-backup"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    egress = by_kind(docs, "NetworkPolicy")["amem-backup"]["spec"]["egress"]
    assert 443 not in [p["port"] for r in egress for p in r["ports"]]
    # No backup, no CronJob.
    assert not by_kind(rendered("defaults"), "CronJob")


def test_backup_without_a_destination_fails():
    result = helm("template", "amem", str(CHART), "--set", "backup.enabled=true", check=False)
    assert result.returncode != 0
    assert "backup.destination" in result.stderr


def test_admin_keys_reach_the_gateway_from_the_secret_only():
    docs = rendered("ingress-tls-values")
    secret = by_kind(docs, "Secret")["amem"]
    admin = json.loads(base64.b64decode(secret["data"]["admin-api-keys.json"]))
    assert admin == ["sha256:9b74c9897bac770ffc029102a200c5de0e7c4e6f4f6e7c2b3b0e1f2a3b4c5d6e"]
    pod = pod_specs(docs)["amem-gateway"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["AMEM_ADMIN_API_KEYS_FILE"] == "/etc/amem/admin/admin-api-keys.json"
    volume = next(v for v in pod["volumes"] if v["name"] == "admin-keys")["secret"]
    assert volume["optional"] is True
    assert volume["items"] == [{"key": "admin-api-keys.json", "path": "admin-api-keys.json"}]
    config = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    assert config["AMEM_RATE_LIMIT"] == "100/second"
    # No admin keys: nothing in the Secret, and the gateway's admin API stays off.
    assert "admin-api-keys.json" not in by_kind(rendered("defaults"), "Secret")["amem"]["data"]


def test_quotas_reach_gateway_and_evolution_alike():
    config = next(iter(by_kind(rendered("evolution-hpa-values"), "ConfigMap").values()))["data"]
    expected = {
        "default": {"notes": 100000, "llm_tokens_per_day": 2000000},
        "acme": {"llm_tokens_per_day": 10000000},
    }
    assert json.loads(config["AMEM_QUOTAS"]) == expected
    assert json.loads(config["AMEM_EVOLUTION_QUOTAS"]) == expected
    bad = helm("template", "amem", str(CHART), "--set", "quotas.acme.notes=0", check=False)
    assert bad.returncode != 0


def test_numbers_in_the_configmap_are_written_as_the_services_read_them():
    """helm renders a large integer as a float ("1.048576e+06"), which a setting typed int
    refuses: the gateway did not start (found by the docker tier)."""
    [configmap] = [d for d in rendered("defaults") if d["kind"] == "ConfigMap"]
    data = configmap["data"]
    assert data["AMEM_MAX_BODY_BYTES"] == "1048576"
    assert not [k for k, v in data.items() if re.fullmatch(r"[0-9.]+e[+-][0-9]+", str(v))]
