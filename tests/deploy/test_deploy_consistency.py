"""The compose file and the rendered manifests agree with the code (consistency.py says what
that means), and the checks catch a copy that disagrees."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from consistency import check_compose, check_env_example, check_manifests
from deploy_helpers import OVERLAYS, ROOT

Objects = list[dict[str, Any]]


# ---- the real files -------------------------------------------------------------------------


def test_compose_agrees_with_the_code(compose: dict[str, Any]) -> None:
    assert check_compose(compose) == []


def test_env_example_lists_what_compose_reads_with_the_codes_defaults() -> None:
    problems = check_env_example(
        (ROOT / "docker-compose.yml").read_text(encoding="utf-8"),
        (ROOT / ".env.example").read_text(encoding="utf-8"),
    )
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_agree_with_the_code(overlay: str, rendered: dict[str, Objects]) -> None:
    assert check_manifests(rendered[overlay]) == []


def _inference_pod(objects: Objects) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "inference")


def test_gpu_overlay_runs_inference_on_vllm_on_a_gpu_node(rendered: dict[str, Objects]) -> None:
    gpu, cpu = rendered["gpu"], rendered["cpu"]
    pod = _inference_pod(gpu)["spec"]["template"]["spec"]
    inference = next(c for c in pod["containers"] if c["name"] == "inference")
    assert inference["image"].startswith("talklike-vllm:")
    assert inference["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"]
    # The sidecar and the other services keep the CPU image.
    assert {c["image"].split(":")[0] for c in pod["initContainers"]} == {"talklike"}
    config = next(
        o for o in gpu if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("talklike-inference-")
    )
    assert config["data"]["TALKLIKE_INFERENCE_BACKEND"] == "vllm"
    claim = next(o for o in gpu if o["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    cpu_pod = _inference_pod(cpu)["spec"]["template"]["spec"]
    assert all(c["image"].startswith("talklike:") for c in cpu_pod["containers"])
    assert "nvidia.com/gpu" not in str(cpu_pod)


def _one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_gpu_overlay_trains_as_kubernetes_jobs_with_the_rbac_the_launcher_needs(
    rendered: dict[str, Objects],
) -> None:
    """The Role grants every call the launcher makes, bound to the account the training pod runs as."""
    from talklike.training.kubernetes_launcher import PERMISSIONS

    gpu, cpu = rendered["gpu"], rendered["cpu"]
    role = _one(gpu, "Role", "training-jobs")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert set(PERMISSIONS) <= granted
    binding = _one(gpu, "RoleBinding", "training-jobs")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "training-jobs",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "training", "namespace": "talklike"}]
    _one(gpu, "ServiceAccount", "training")
    pod = _one(gpu, "Deployment", "training")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "training" and pod["automountServiceAccountToken"] is True
    assert "nvidia.com/gpu" not in str(pod)  # the service itself needs no GPU: its Jobs ask for them
    config = next(
        o for o in gpu if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("talklike-training-")
    )
    assert config["data"]["TALKLIKE_TRAINING_LAUNCHER"] == "kubernetes"
    assert config["data"]["TALKLIKE_TRAINING_KUBERNETES_IMAGE"].startswith("talklike-vllm:")
    # The cpu overlay keeps the local launcher and mounts no token.
    cpu_pod = _one(cpu, "Deployment", "training")["spec"]["template"]["spec"]
    assert cpu_pod["automountServiceAccountToken"] is False


# ---- broken copies are caught ---------------------------------------------------------------


def _compose_service(config: dict[str, Any], key: str) -> dict[str, Any]:
    service: dict[str, Any] = config["services"][key]
    return service


COMPOSE_BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "misspelt-setting": (
        lambda c: _compose_service(c, "inference")["environment"].update(TALKLIKE_INFERENCE_BASEMODEL="tiny"),
        "TALKLIKE_INFERENCE_BASEMODEL is not a setting of inference",
    ),
    "another-services-setting": (
        lambda c: _compose_service(c, "generation")["environment"].update(TALKLIKE_INFERENCE_BACKEND="vllm"),
        "TALKLIKE_INFERENCE_BACKEND is not a setting of generation",
    ),
    "invalid-value": (
        lambda c: _compose_service(c, "disk-agent")["environment"].update(
            TALKLIKE_DISK_AGENT_HIGH_WATERMARK="lots"
        ),
        "invalid high_watermark",
    ),
    "wrong-port": (
        lambda c: _compose_service(c, "training")["environment"].update(TALKLIKE_TRAINING_PORT="50099"),
        "port 50099, the registry says 50053",
    ),
    "loopback-host": (
        lambda c: _compose_service(c, "moderation")["environment"].pop("TALKLIKE_MODERATION_HOST"),
        "moderation's host is not set",
    ),
    "address-to-the-wrong-service": (
        lambda c: _compose_service(c, "training")["environment"].update(
            TALKLIKE_INFERENCE_ADDRESS="generation:50054"
        ),
        "does not name a host running inference",
    ),
    "unpublished-http-port": (
        lambda c: _compose_service(c, "inference").update(
            ports=[p for p in _compose_service(c, "inference")["ports"] if "8054" not in str(p)]
        ),
        "ports [8054] are not published",
    ),
    "no-health-check": (
        lambda c: _compose_service(c, "disk-agent").pop("healthcheck"),
        "compose service disk-agent: no gRPC health check",
    ),
    "a-service-missing": (lambda c: c["services"].pop("moderation"), "the default services run"),
}


@pytest.mark.parametrize("case", sorted(COMPOSE_BREAKS))
def test_compose_check_catches(case: str, compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    mutate, expected = COMPOSE_BREAKS[case]
    mutate(broken)
    problems = check_compose(broken)
    assert any(expected in p for p in problems), problems


def test_env_example_check_catches_drift() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    drifted = example.replace("TALKLIKE_INFERENCE_MAX_QUEUE=32", "TALKLIKE_INFERENCE_MAX_QUEUE=64")
    problems = check_env_example(compose_text, drifted)
    assert any(
        "TALKLIKE_INFERENCE_MAX_QUEUE=64 but docker-compose.yml defaults to ['32']" in p for p in problems
    )
    assert any("TALKLIKE_INFERENCE_MAX_QUEUE=64, but inference's default is 32" in p for p in problems)
    missing = example.replace("TALKLIKE_LOG_LEVEL=INFO\n", "")
    assert check_env_example(compose_text, missing) == [
        ".env.example: TALKLIKE_LOG_LEVEL is used by docker-compose.yml but not listed"
    ]


def _container(objects: Objects, deployment: str, container: str) -> dict[str, Any]:
    pod = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment)
    spec = pod["spec"]["template"]["spec"]
    found: dict[str, Any] = next(
        c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == container
    )
    return found


def _config(objects: Objects, prefix: str) -> dict[str, str]:
    data: dict[str, str] = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(prefix)
    )["data"]
    return data


def _move_sidecar_to_its_own_containers(objects: Objects) -> None:
    pod = _inference_pod(objects)["spec"]["template"]["spec"]
    sidecar = pod.pop("initContainers")[0]
    sidecar.pop("restartPolicy")
    pod["containers"].append(sidecar)


MANIFEST_BREAKS: dict[str, tuple[Callable[[Objects], None], str]] = {
    "misspelt-setting": (
        lambda o: _config(o, "talklike-training-").update(TALKLIKE_TRAINING_NOTIFY_INFERNCE="true"),
        "TALKLIKE_TRAINING_NOTIFY_INFERNCE is not a setting of training",
    ),
    "readiness-on-liveness": (
        lambda o: _container(o, "generation", "generation")["readinessProbe"]["grpc"].pop("service"),
        "readiness must be gRPC talklike.v1.GenerationService on 50051",
    ),
    "probe-on-the-wrong-port": (
        lambda o: _container(o, "inference", "inference")["livenessProbe"]["grpc"].update(port=8054),
        "liveness must be gRPC '' on 50054",
    ),
    "undeclared-port": (
        lambda o: _container(o, "inference", "inference").update(
            ports=[p for p in _container(o, "inference", "inference")["ports"] if p["containerPort"] != 8054]
        ),
        "container ports [8054] are not declared",
    ),
    "missing-secret-key": (
        lambda o: _container(o, "training", "training")["env"][0]["valueFrom"]["secretKeyRef"].update(
            key="TOKEN"
        ),
        "refers to a missing Secret key",
    ),
    "writable-root": (
        lambda o: _container(o, "moderation", "moderation")["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
        "needs readOnlyRootFilesystem",
    ),
    "no-limits": (
        lambda o: _container(o, "training", "training")["resources"].pop("limits"),
        "limits must name cpu and memory",
    ),
    "sidecar-not-a-sidecar": (_move_sidecar_to_its_own_containers, "the disk agent must be a sidecar"),
    "service-selecting-nothing": (
        lambda o: next(x for x in o if x["kind"] == "Service" and x["metadata"]["name"] == "disk-agent")[
            "spec"
        ].update(selector={"app.kubernetes.io/name": "disk-agent"}),
        "no Service disk-agent reaching disk-agent",
    ),
    "no-pdb": (
        lambda o: o.remove(next(x for x in o if x["kind"] == "PodDisruptionBudget")),
        "no PodDisruptionBudget for the inference Deployment",
    ),
    "address-on-the-wrong-port": (
        lambda o: _config(o, "talklike-training-").update(TALKLIKE_DISK_AGENT_ADDRESS="disk-agent:9455"),
        "disk-agent listens on 50055",
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_BREAKS))
def test_manifest_check_catches(case: str, rendered: dict[str, Objects]) -> None:
    broken = copy.deepcopy(rendered["cpu"])
    mutate, expected = MANIFEST_BREAKS[case]
    mutate(broken)
    problems = check_manifests(broken)
    assert any(expected in p for p in problems), problems
