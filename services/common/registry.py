"""The five services: names, protobuf names, default ports, and where their code lives.

Everything that needs the list of services (``talklike serve/up/status``, the deploy
files' consistency test) reads it from here, so it is written once. Modules are named as
strings and imported on demand: starting one service never imports another's engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from talklike.common.service import ServiceBinding
    from talklike.common.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceEntry:
    """One service: how it is called and where its settings and servicer factory are."""

    name: str
    full_name: str
    default_port: int
    default_metrics_port: int
    settings_path: str
    factory_path: str

    def settings_class(self) -> type[ServiceSettings]:
        """Import and return the service's settings class."""
        return _load(self.settings_path)

    def factory(self) -> Callable[[Any], ServiceBinding]:
        """Import and return ``create_service(settings) -> ServiceBinding``."""
        return _load(self.factory_path)


def _load(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


SERVICES: dict[str, ServiceEntry] = {
    entry.name: entry
    for entry in (
        ServiceEntry(
            "generation",
            "talklike.v1.GenerationService",
            50051,
            9451,
            "talklike.generation.settings:GenerationSettings",
            "talklike.generation.servicer:create_service",
        ),
        ServiceEntry(
            "moderation",
            "talklike.v1.ModerationService",
            50052,
            9452,
            "talklike.moderation.settings:ModerationSettings",
            "talklike.moderation.servicer:create_service",
        ),
        ServiceEntry(
            "training",
            "talklike.v1.TrainingService",
            50053,
            9453,
            "talklike.training.settings:TrainingSettings",
            "talklike.training.servicer:create_service",
        ),
        ServiceEntry(
            "inference",
            "talklike.v1.InferenceService",
            50054,
            9454,
            "talklike.inference.settings:InferenceSettings",
            "talklike.inference.servicer:create_service",
        ),
        ServiceEntry(
            "disk-agent",
            "talklike.v1.DiskAgentService",
            50055,
            9455,
            "talklike.disk_agent.settings:DiskAgentSettings",
            "talklike.disk_agent.servicer:create_service",
        ),
    )
}


def get(name: str) -> ServiceEntry:
    """The entry for ``name``; raises KeyError listing the known names."""
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None
