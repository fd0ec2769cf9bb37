"""The import rules of DEVELOPING.md ("Import rules", a–f), checked over the package's syntax trees.

Every ``import`` and ``from ... import`` in ``services/`` (the package ``talklike``, generated
stubs aside) is read, at module level and inside functions alike, and judged by the rules. The
few imports that still break a rule are listed in ``KNOWN`` with the change that removes them;
an entry that no longer occurs fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "services"
SERVICES = frozenset({"generation", "moderation", "training", "inference", "disk_agent"})
#: Parts of the package that are not services and may call services only through their clients.
CLIENT_SIDES = frozenset({"evaluation", "pipeline", "models", "cli"})
HEAVY = frozenset({"torch", "transformers", "peft", "vllm", "bitsandbytes", "accelerate"})
#: The modules that speak gRPC besides common/ and cli/.
GRPC_MODULES = frozenset({"servicer.py", "client.py"})

#: Imports that still break a rule: (file relative to services/, imported module) → what removes it.
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported, and whether at the module's top level."""

    file: str
    line: int
    module: str
    top_level: bool

    @property
    def area(self) -> str:
        """The sub-package the importing file belongs to (``common``, ``generation``...)."""
        return self.file.split("/")[0] if "/" in self.file else ""


def imports() -> Iterator[Import]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("v1/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(relative, node.lineno, alias.name, id(node) in top)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from talklike.x import client`` imports the module talklike.x.client.
                for alias in node.names:
                    if (
                        node.module.count(".") == 1
                        and node.module.startswith("talklike.")
                        and alias.name == "client"
                    ):
                        yield Import(relative, node.lineno, f"{node.module}.client", id(node) in top)
                        break
                else:
                    yield Import(relative, node.lineno, node.module, id(node) in top)


def target(module: str) -> str:
    """The talklike sub-package ``module`` belongs to, or "" for anything outside talklike."""
    parts = module.split(".")
    return parts[1] if parts[0] == "talklike" and len(parts) > 1 else ""


def is_client(module: str) -> bool:
    parts = module.split(".")
    return len(parts) == 3 and parts[2] == "client"


def broken_rules(item: Import) -> list[str]:
    """The rules ``item`` breaks, each as a sentence."""
    out: list[str] = []
    area, goal, root = item.area, target(item.module), item.module.split(".")[0]
    if area in SERVICES and goal in SERVICES and goal != area and not is_client(item.module):
        out.append(f"(a) service {area} imports {item.module}, not the {goal} service's client module")
    speaks_grpc = root in ("grpc", "grpc_health", "grpc_reflection") or goal == "v1"
    if speaks_grpc and area not in ("common", "cli") and item.file.rsplit("/", 1)[-1] not in GRPC_MODULES:
        out.append(f"(b) {item.file} imports {item.module}: only servicers and clients speak gRPC")
    if area == "common" and goal and goal not in ("common", "v1"):
        out.append(f"(c) common/ imports {item.module}: common sits below every service")
    if area in CLIENT_SIDES and goal in SERVICES and not is_client(item.module):
        out.append(f"(d/e) {area}/ imports {item.module}: services are called through their client modules")
    if area in ("models", "packs") and goal in SERVICES:
        out.append(f"(d) {area}/ imports the service module {item.module}")
    if root in HEAVY and item.top_level:
        out.append(
            f"(f) {item.file} imports {item.module} at module level: heavy engines load inside functions"
        )
    return out


def test_the_import_rules_hold() -> None:
    found: list[str] = []
    seen_known: set[tuple[str, str]] = set()
    for item in imports():
        problems = broken_rules(item)
        if not problems:
            continue
        if (item.file, item.module) in KNOWN:
            seen_known.add((item.file, item.module))
            continue
        found.extend(f"{item.file}:{item.line}: {p}" for p in problems)
    assert not found, "\n".join(found)
    gone = sorted(set(KNOWN) - seen_known)
    assert not gone, f"no longer broken, remove from KNOWN: {gone}"


@pytest.mark.parametrize(
    ("item", "rule"),
    [
        (Import("moderation/core.py", 1, "talklike.generation.validation", True), "(a)"),
        (Import("training/disk.py", 1, "talklike.disk_agent.client", False), None),
        (Import("training/worker.py", 1, "grpc", True), "(b)"),
        (Import("training/servicer.py", 1, "talklike.v1.training_pb2", True), None),
        (Import("common/paths.py", 1, "talklike.packs.loader", True), "(c)"),
        (Import("pipeline/run.py", 1, "talklike.training.store", False), "(d/e)"),
        (Import("pipeline/run.py", 1, "talklike.training.client", False), None),
        (Import("packs/loader.py", 1, "talklike.generation.engine", False), "(d)"),
        (Import("evaluation/heldout.py", 1, "talklike.packs.loader", False), None),
        (Import("training/peft_trainer.py", 1, "torch", True), "(f)"),
        (Import("training/peft_trainer.py", 1, "torch", False), None),
    ],
)
def test_the_checker_tells_a_broken_rule(item: Import, rule: str | None) -> None:
    problems = broken_rules(item)
    assert [p[: len(rule)] for p in problems] == ([rule] if rule else [])
