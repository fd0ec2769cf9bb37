"""Checks that the compose file and the Kubernetes manifests agree with the code.

The services' names, ports, health names and settings are defined once, in the registry and
the settings classes; the deploy files repeat them in another language. Each checker returns
the list of disagreements (empty when all is well), so a test can both require none on the
real files and show that a broken copy is caught.

What must hold for every container that runs ``talklike serve NAME``:
- the five registered services run, each exactly once per stack;
- the ports are the registry's (gRPC, metrics, and any other ``*_port`` setting such as the
  inference HTTP face), published/exposed, on ``0.0.0.0`` inside the container;
- readiness asks the full service name, liveness the server (``""``);
- every environment variable is a setting of that service (with a value it accepts), a
  client variable the code reads (``TALKLIKE_<SERVICE>_ADDRESS`` pointing at the right
  service and port), or one of the few foreign variables listed here with the reason;
- the important settings are set explicitly (not left to defaults that are wrong in a container).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import pydantic
from talklike.cli.stack import env_variable
from talklike.common import registry
from talklike.common.client import CA_FILE_ENV, SERVER_NAME_ENV, env_name
from talklike.common.settings import ServiceSettings

DATA_HOME = "/data"

#: Variables from outside talklike's settings, the services that read them, and why.
FOREIGN_VARIABLES: dict[str, tuple[frozenset[str], str]] = {
    "OPENAI_API_KEY": (
        frozenset({"generation", "moderation", "training", "inference"}),
        "the openai client's key: LLM questions, omni-moderation, OpenAI fine-tuning, openai backend",
    ),
}

#: Set explicitly for every service: where it listens and keeps its data, and its auth.
REQUIRED_SETTINGS = ("home", "auth_token", "host", "port", "metrics_port")
#: Set explicitly per service, beyond REQUIRED_SETTINGS.
REQUIRED_BY_SERVICE: dict[str, tuple[str, ...]] = {
    "inference": ("backend", "base_model", "http_port"),
    "disk-agent": ("models_dir",),
}
#: Which other services a service calls, so its container must say where they are.
CALLS: dict[str, tuple[str, ...]] = {"training": ("inference", "disk-agent")}

ADDRESS_VARIABLES = {env_name(name, "ADDRESS"): name for name in registry.SERVICES}
CLIENT_VARIABLES = {CA_FILE_ENV, SERVER_NAME_ENV}


@cache
def settings_variables(name: str) -> dict[str, str]:
    """Environment variable → settings field, for service ``name`` (imports its settings class)."""
    cls = registry.get(name).settings_class()
    return {env_variable(cls, field, info): field for field, info in cls.model_fields.items()}


def shared_variables() -> dict[str, str]:
    """The variables every service shares (``TALKLIKE_HOME``...): the base class's aliased fields."""
    return {
        info.validation_alias: field
        for field, info in ServiceSettings.model_fields.items()
        if isinstance(info.validation_alias, str)
    }


def extra_ports(settings: ServiceSettings) -> dict[str, int]:
    """Ports beside gRPC and metrics that the service listens on (``http_port``...), when on."""
    return {
        field: int(getattr(settings, field))
        for field in type(settings).model_fields
        if field.endswith("_port") and field not in ("port", "metrics_port") and getattr(settings, field)
    }


def check_environment(
    where: str,
    name: str,
    env: Mapping[str, str | None],
    address_targets: Mapping[str, str],
) -> tuple[list[str], ServiceSettings | None]:
    """Problems with one service container's environment, and its settings when they load.

    ``env`` maps variable → value (None when it comes from a Secret); ``address_targets`` maps
    a host name in the deploy file → the registered service it runs.
    """
    problems: list[str] = []
    known = settings_variables(name)
    given: dict[str, Any] = {}
    for variable, value in env.items():
        if variable in known:
            if value is not None:
                given[known[variable]] = value
        elif variable in ADDRESS_VARIABLES:
            problems += check_address(where, variable, value, address_targets)
        elif variable in CLIENT_VARIABLES:
            continue
        elif variable in FOREIGN_VARIABLES:
            readers, _why = FOREIGN_VARIABLES[variable]
            if name not in readers:
                problems.append(f"{where}: {variable} is set but {name} does not read it")
        else:
            problems.append(f"{where}: {variable} is not a setting of {name}")
    settings: ServiceSettings | None = None
    try:
        settings = registry.get(name).settings_class()(**given)
    except pydantic.ValidationError as error:
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            problems.append(f"{where}: invalid {field}: {problem['msg']}")
    explicit = {known[v] for v in env if v in known}
    for field in (*REQUIRED_SETTINGS, *REQUIRED_BY_SERVICE.get(name, ())):
        if field not in explicit:
            problems.append(f"{where}: {name}'s {field} is not set")
    for callee in CALLS.get(name, ()):
        if env_name(callee, "ADDRESS") not in env:
            problems.append(f"{where}: {name} calls {callee} but {env_name(callee, 'ADDRESS')} is not set")
    if settings is not None:
        entry = registry.get(name)
        if settings.port != entry.default_port:
            problems.append(f"{where}: port {settings.port}, the registry says {entry.default_port}")
        if settings.metrics_port != entry.default_metrics_port:
            problems.append(
                f"{where}: metrics port {settings.metrics_port}, the registry says {entry.default_metrics_port}"
            )
        if settings.host != "0.0.0.0":
            problems.append(f"{where}: host {settings.host!r}: only 0.0.0.0 is reachable from outside")
        if str(settings.home) != DATA_HOME:
            problems.append(f"{where}: data home {settings.home}, the volume is mounted at {DATA_HOME}")
    return problems, settings


def check_address(
    where: str, variable: str, value: str | None, address_targets: Mapping[str, str]
) -> list[str]:
    """``TALKLIKE_X_ADDRESS`` must name a host running X, on X's registered port."""
    target = ADDRESS_VARIABLES[variable]
    host, _, port = (value or "").rpartition(":")
    problems = []
    if address_targets.get(host) != target:
        problems.append(f"{where}: {variable}={value} does not name a host running {target}")
    if port != str(registry.get(target).default_port):
        problems.append(
            f"{where}: {variable}={value}: {target} listens on {registry.get(target).default_port}"
        )
    return problems


# ---- docker-compose -------------------------------------------------------------------------


def served(command: Any) -> str | None:
    """NAME of a ``serve NAME`` command (list or string), else None."""
    parts = command.split() if isinstance(command, str) else list(command or [])
    return parts[1] if len(parts) >= 2 and parts[0] == "serve" else None


def compose_environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A compose service's environment as a mapping (compose allows a list of ``K=V`` too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {k: v for k, _, v in (item.partition("=") for item in env)}
    return {k: None if v is None else str(v) for k, v in env.items()}


def compose_container_ports(service: Mapping[str, Any]) -> set[int]:
    """The container side of a compose service's published ports (short or long syntax)."""
    ports: set[int] = set()
    for item in service.get("ports") or []:
        if isinstance(item, Mapping):
            ports.add(int(item["target"]))
        else:
            ports.add(int(str(item).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def check_compose(config: Mapping[str, Any]) -> list[str]:
    """Disagreements between a resolved compose file (``docker-compose config``) and the code."""
    services: Mapping[str, Any] = config.get("services") or {}
    problems: list[str] = []
    runs = {key: served(spec.get("command")) for key, spec in services.items()}
    address_targets = {key: name for key, name in runs.items() if name}
    default = sorted(name for key, name in runs.items() if name and not services[key].get("profiles"))
    if default != sorted(registry.SERVICES):
        problems.append(
            f"compose: the default services run {default}, the registry has {sorted(registry.SERVICES)}"
        )
    for key, spec in services.items():
        name = runs[key]
        where = f"compose service {key}"
        if name is None:
            problems += check_compose_client(where, spec, address_targets)
            continue
        if name not in registry.SERVICES:
            problems.append(f"{where}: serves {name!r}, which is not a registered service")
            continue
        env_problems, settings = check_environment(where, name, compose_environment(spec), address_targets)
        problems += env_problems
        if settings is not None:
            wanted = {settings.port, settings.metrics_port, *extra_ports(settings).values()}
            missing = wanted - compose_container_ports(spec)
            if missing:
                problems.append(f"{where}: ports {sorted(missing)} are not published")
        health = spec.get("healthcheck") or {}
        if health.get("disable") or "talklike-healthcheck" not in " ".join(health.get("test") or []):
            problems.append(f"{where}: no gRPC health check (talklike-healthcheck)")
        if not any(_mount_target(v) == DATA_HOME for v in spec.get("volumes") or []):
            problems.append(f"{where}: the data volume is not mounted at {DATA_HOME}")
        for dependency, condition in (spec.get("depends_on") or {}).items():
            if (condition or {}).get("condition") != "service_healthy":
                problems.append(f"{where}: depends on {dependency} without condition service_healthy")
            if dependency not in services or not (services[dependency].get("healthcheck") or {}).get("test"):
                problems.append(f"{where}: depends on {dependency}, which has no health check")
    return problems


def _mount_target(volume: Any) -> str:
    """Where a compose volume entry (``src:target[:mode]`` or long syntax) is mounted."""
    if isinstance(volume, Mapping):
        return str(volume.get("target", ""))
    parts = str(volume).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def check_compose_client(
    where: str, spec: Mapping[str, Any], address_targets: Mapping[str, str]
) -> list[str]:
    """A container running the CLI: shared settings, and an address for every service."""
    problems = []
    env = compose_environment(spec)
    shared = shared_variables()
    for variable, value in env.items():
        if variable in ADDRESS_VARIABLES:
            problems += check_address(where, variable, value, address_targets)
        elif (
            variable not in shared and variable not in CLIENT_VARIABLES and variable not in FOREIGN_VARIABLES
        ):
            problems.append(f"{where}: {variable} is not read by the talklike CLI")
    for variable in ADDRESS_VARIABLES:
        if variable not in env:
            problems.append(f"{where}: {variable} is not set, the CLI would look on 127.0.0.1")
    return problems


INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolated(compose_text: str) -> dict[str, set[str]]:
    """Variable → the defaults it is given in the raw compose file (``${VAR:-default}``; comments skipped)."""
    found: dict[str, set[str]] = {}
    code = "\n".join(line for line in compose_text.splitlines() if not line.lstrip().startswith("#"))
    for match in INTERPOLATION.finditer(code):
        found.setdefault(match["name"], set()).add(match["default"] or "")
    return found


def env_example(text: str) -> dict[str, str]:
    """``VAR=value`` lines of an env file (comments and blank lines skipped)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def check_env_example(compose_text: str, example_text: str) -> list[str]:
    """.env.example lists exactly the variables compose reads, with compose's defaults, which
    are the code's defaults where the variable is a setting."""
    problems = []
    used = interpolated(compose_text)
    listed = env_example(example_text)
    for variable in sorted(set(used) - set(listed)):
        problems.append(f".env.example: {variable} is used by docker-compose.yml but not listed")
    for variable in sorted(set(listed) - set(used)):
        problems.append(f".env.example: {variable} is listed but docker-compose.yml does not use it")
    for variable in sorted(set(used) & set(listed)):
        if used[variable] != {listed[variable]}:
            problems.append(
                f".env.example: {variable}={listed[variable]} but docker-compose.yml defaults to {sorted(used[variable])}"
            )
    for variable, value in listed.items():
        for name in registry.SERVICES:
            field = settings_variables(name).get(variable)
            if field is None:
                continue
            cls = registry.get(name).settings_class()
            try:
                given: dict[str, Any] = {field: value}
                parsed = getattr(cls(**given), field)
            except pydantic.ValidationError as error:
                problems.append(
                    f".env.example: {variable}={value} is not valid for {name}: {error.errors()[0]['msg']}"
                )
                continue
            default = getattr(cls(), field)
            if parsed != default:
                problems.append(f".env.example: {variable}={value}, but {name}'s default is {default!r}")
    return problems


# ---- Kubernetes -----------------------------------------------------------------------------


def index(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(kind, name) → object."""
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def pod_containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A pod spec's containers and init containers (native sidecars are init containers)."""
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def container_environment(
    container: Mapping[str, Any], objects: Mapping[tuple[str, str], Mapping[str, Any]], where: str
) -> tuple[dict[str, str | None], list[str]]:
    """A container's variables from envFrom ConfigMaps/Secrets and env (Secret values: None)."""
    env: dict[str, str | None] = {}
    problems = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = objects.get(("ConfigMap", source["configMapRef"]["name"]))
            if config is None:
                problems.append(f"{where}: ConfigMap {source['configMapRef']['name']} does not exist")
                continue
            env.update(config.get("data", {}))
        elif "secretRef" in source:
            secret = objects.get(("Secret", source["secretRef"]["name"]))
            if secret is None:
                problems.append(f"{where}: Secret {source['secretRef']['name']} does not exist")
                continue
            env.update(dict.fromkeys({**secret.get("data", {}), **secret.get("stringData", {})}))
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            secret = objects.get(("Secret", ref["name"]))
            if secret is None or ref["key"] not in {**secret.get("data", {}), **secret.get("stringData", {})}:
                problems.append(
                    f"{where}: {item['name']} refers to a missing Secret key {ref['name']}/{ref['key']}"
                )
            env[item["name"]] = None
        else:
            env[item["name"]] = item.get("value", "")
    return env, problems


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Does a matchLabels selector select these labels?"""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_manifests(objects_list: Sequence[Mapping[str, Any]]) -> list[str]:
    """Disagreements between rendered manifests (one overlay) and the code."""
    objects = index(objects_list)
    problems: list[str] = []
    deployments = [o for o in objects_list if o["kind"] == "Deployment"]
    runs: dict[str, list[tuple[Mapping[str, Any], Mapping[str, Any]]]] = {}
    for deployment in deployments:
        for container in pod_containers(deployment["spec"]["template"]["spec"]):
            name = served(container.get("args") or container.get("command"))
            if name:
                runs.setdefault(name, []).append((deployment, container))
    if sorted(runs) != sorted(registry.SERVICES) or any(len(v) != 1 for v in runs.values()):
        counts = {name: len(v) for name, v in runs.items()}
        problems.append(
            f"manifests: the containers run {counts}, the registry has {sorted(registry.SERVICES)}"
        )
    services = [o for o in objects_list if o["kind"] == "Service"]
    # Which registered service a Service name reaches: the service of the container whose pod it selects.
    address_targets: dict[str, str] = {}
    for service in services:
        for name, placements in runs.items():
            for deployment, container in placements:
                labels = deployment["spec"]["template"]["metadata"].get("labels", {})
                ports = {p.get("name") for p in container.get("ports", [])} | {
                    p["containerPort"] for p in container.get("ports", [])
                }
                if selects(service["spec"].get("selector", {}), labels) and any(
                    p.get("targetPort", p["port"]) in ports and p["port"] == registry.get(name).default_port
                    for p in service["spec"].get("ports", [])
                ):
                    address_targets[service["metadata"]["name"]] = name
    for name in registry.SERVICES:
        if address_targets.get(name) != name:
            problems.append(
                f"manifests: no Service {name} reaching {name} on port {registry.get(name).default_port}"
            )
    for name, placements in runs.items():
        if name not in registry.SERVICES:
            problems.append(f"manifests: a container serves {name!r}, which is not a registered service")
            continue
        for deployment, container in placements:
            problems += check_container(name, deployment, container, objects, address_targets)
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        problems += check_inference_guard(kind, objects_list, runs)
    if not any(o["kind"] == "NetworkPolicy" for o in objects_list):
        problems.append("manifests: no NetworkPolicy")
    return problems


def check_container(
    name: str,
    deployment: Mapping[str, Any],
    container: Mapping[str, Any],
    objects: Mapping[tuple[str, str], Mapping[str, Any]],
    address_targets: Mapping[str, str],
) -> list[str]:
    """One ``serve NAME`` container: environment, ports, probes, resources, security, volumes."""
    entry = registry.get(name)
    where = f"Deployment {deployment['metadata']['name']} container {container['name']}"
    pod = deployment["spec"]["template"]["spec"]
    env, problems = container_environment(container, objects, where)
    env_problems, settings = check_environment(where, name, env, address_targets)
    problems += env_problems
    ports = {p["containerPort"] for p in container.get("ports", [])}
    if settings is not None:
        wanted = {settings.port, settings.metrics_port, *extra_ports(settings).values()}
        if wanted - ports:
            problems.append(f"{where}: container ports {sorted(wanted - ports)} are not declared")
    readiness = (container.get("readinessProbe") or {}).get("grpc") or {}
    if readiness != {"port": entry.default_port, "service": entry.full_name}:
        problems.append(
            f"{where}: readiness must be gRPC {entry.full_name} on {entry.default_port}, not {readiness}"
        )
    liveness = (container.get("livenessProbe") or {}).get("grpc") or {}
    if liveness.get("port") != entry.default_port or liveness.get("service", "") != "":
        problems.append(f"{where}: liveness must be gRPC '' on {entry.default_port}, not {liveness}")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(part) or {}):
            problems.append(f"{where}: {part} must name cpu and memory")
    security = container.get("securityContext") or {}
    if (
        security.get("readOnlyRootFilesystem") is not True
        or security.get("allowPrivilegeEscalation") is not False
    ):
        problems.append(f"{where}: needs readOnlyRootFilesystem and no privilege escalation")
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
        problems.append(f"{where}: the pod must run as non-root")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    data = volumes.get(mounts.get(DATA_HOME, ""), {})
    if "persistentVolumeClaim" not in data:
        problems.append(f"{where}: {DATA_HOME} is not the data PVC")
    if "/tmp" not in mounts:
        problems.append(f"{where}: no writable /tmp under a read-only root filesystem")
    if name == "disk-agent":
        inference_here = any(served(c.get("args")) == "inference" for c in pod.get("containers", []))
        sidecar = container in pod.get("initContainers", []) and container.get("restartPolicy") == "Always"
        if not (inference_here and sidecar):
            problems.append(
                f"{where}: the disk agent must be a sidecar (restartPolicy Always) of the inference pod"
            )
        elif any(
            m["name"] != mounts.get(DATA_HOME)
            for c in pod["containers"]
            for m in c.get("volumeMounts", [])
            if m["mountPath"] == DATA_HOME
        ):
            problems.append(f"{where}: the disk agent and inference do not share the data volume")
    return problems


def check_inference_guard(
    kind: str,
    objects_list: Sequence[Mapping[str, Any]],
    runs: Mapping[str, list[tuple[Mapping[str, Any], Mapping[str, Any]]]],
) -> list[str]:
    """An HPA scaling, or a PDB guarding, the inference Deployment."""
    placements = runs.get("inference") or []
    if not placements:
        return []
    deployment = placements[0][0]
    labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    for obj in objects_list:
        if obj["kind"] != kind:
            continue
        if kind == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            if target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"]:
                return []
        elif selects(obj["spec"].get("selector", {}).get("matchLabels", {}), labels):
            return []
    return [f"manifests: no {kind} for the inference Deployment"]
