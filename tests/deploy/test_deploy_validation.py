"""The deploy files pass the offline validators, and the validators catch a broken copy.

docker-compose 1.29 checks the compose file against its schema (`config -q`), hadolint lints
both Dockerfiles, kustomize renders each overlay and kubernetes-validate checks every object
strictly (without --strict a misspelt field passes silently). Each check is also run on a
deliberately broken copy, so a validator that stopped looking would fail here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import COMPOSE_PROFILES, OVERLAYS, ROOT, compose_config, kustomize, tool

DOCKERFILES = ("deploy/Dockerfile", "deploy/Dockerfile.vllm")
#: The oldest Kubernetes the manifests target (HPA ContainerResource is GA from 1.30; native
#: sidecars are on by default from 1.29), and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", None)


# ---- docker-compose -------------------------------------------------------------------------


@pytest.mark.parametrize("profiles", [(), COMPOSE_PROFILES], ids=["default", "all-profiles"])
def test_compose_file_is_valid(profiles: tuple[str, ...], empty_env_file: Path) -> None:
    compose_config(ROOT / "docker-compose.yml", profiles=profiles, env_file=empty_env_file)


def _broken_compose(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "docker-compose.yml").read_text()
    assert old in text, f"the compose file no longer contains {old!r}: update this test"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    return broken


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A misspelt key: the schema knows no "healthchek".
        ("  healthcheck: &healthcheck", "  healthchek: &healthcheck", "healthchek"),
        # A dependency on a service that does not exist.
        (
            "      disk-agent:\n        condition: service_healthy",
            "      disk-agnet:\n        condition: service_healthy",
            "disk-agnet",
        ),
        # A port that is not a port.
        (
            '"${PUBLISH_HOST:-127.0.0.1}:50051:50051"',
            '"${PUBLISH_HOST:-127.0.0.1}:50051:fifty"',
            "services.generation.ports",
        ),
    ],
    ids=["misspelt-key", "unknown-dependency", "bad-port"],
)
def test_compose_validation_rejects_a_broken_file(
    tmp_path: Path, empty_env_file: Path, old: str, new: str, expected: str
) -> None:
    broken = _broken_compose(tmp_path, old, new)
    with pytest.raises(subprocess.CalledProcessError) as failure:
        compose_config(broken, env_file=empty_env_file)
    assert expected in failure.value.stderr


# ---- hadolint -----------------------------------------------------------------------------


def _hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", *map(str, paths)], capture_output=True, text=True, timeout=60
    )


def test_dockerfiles_are_hadolint_clean() -> None:
    result = _hadolint(*(ROOT / path for path in DOCKERFILES))
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_flags_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = (ROOT / "deploy/Dockerfile").read_text()
    # An unpinned package, and running as root at the end.
    broken.write_text(text.replace("USER 10001:10001", "USER root\nRUN pip install requests"))
    result = _hadolint(broken)
    assert result.returncode != 0
    assert "DL3013" in result.stdout and "DL3002" in result.stdout, result.stdout


# ---- Kubernetes ---------------------------------------------------------------------------


def _validate(manifests: Path, version: str | None) -> subprocess.CompletedProcess[str]:
    command = [tool("kubernetes-validate"), "--strict", "--quiet"]
    if version:
        command += ["--kubernetes-version", version]
    return subprocess.run([*command, str(manifests)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(overlay: str, version: str | None, tmp_path: Path) -> None:
    manifests = tmp_path / f"{overlay}.yaml"
    manifests.write_text(kustomize(ROOT / "k8s" / "overlays" / overlay))
    result = _validate(manifests, version)
    assert result.returncode == 0, result.stdout + result.stderr
    # --quiet prints only problems; a warning (e.g. an unknown kind) is a problem too.
    assert result.stdout.strip() == "", result.stdout


def _broken_k8s(tmp_path: Path, file: str, old: str, new: str) -> Path:
    tree = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", tree)
    target = tree / file
    text = target.read_text()
    assert old in text, f"{file} no longer contains {old!r}: update this test"
    target.write_text(text.replace(old, new, 1))
    return tree


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        # A misspelt field: only --strict notices it.
        ("base/generation.yaml", "readinessProbe:", "readinesProbe:", "readinesProbe"),
        # A value of the wrong type.
        ("base/inference.yaml", "containerPort: 50054", "containerPort: fifty", "fifty"),
        # An overlay patch with a field Kubernetes does not have.
        ("overlays/gpu/inference-gpu.yaml", "nodeSelector:", "nodeSelecter:", "nodeSelecter"),
    ],
    ids=["misspelt-field", "wrong-type", "bad-overlay-patch"],
)
def test_validation_rejects_a_broken_manifest(
    tmp_path: Path, file: str, old: str, new: str, expected: str
) -> None:
    tree = _broken_k8s(tmp_path, file, old, new)
    overlay = "gpu" if file.startswith("overlays/gpu") else "cpu"
    manifests = tmp_path / "rendered.yaml"
    manifests.write_text(kustomize(tree / "overlays" / overlay))
    result = _validate(manifests, None)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, result.stdout + result.stderr


def test_kustomize_rejects_a_missing_resource(tmp_path: Path) -> None:
    tree = _broken_k8s(tmp_path, "base/kustomization.yaml", "  - training.yaml\n", "  - trainer.yaml\n")
    with pytest.raises(subprocess.CalledProcessError) as failure:
        kustomize(tree / "overlays" / "cpu")
    assert "trainer.yaml" in failure.value.stderr
