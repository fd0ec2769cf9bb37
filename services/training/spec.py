"""What a job is asked to do, with defaults filled in and every field checked.

The cheap checks (paths, ranges, names) run before a job is created and come back as
INVALID_ARGUMENT naming the field; checks that need the model or the whole dataset run in
the job's validating_files state and fail the job with a clear error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from talklike.common.errors import InvalidArgument, quote
from talklike.common.paths import check_path_text, refuse_directory, resolve_in_home
from talklike.models.resolve import BUILTIN_SOURCES, HUB_ID
from talklike.training.compute import Compute, require_bitsandbytes

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
BACKENDS = ("peft", "openai")
SCHEDULES = ("linear", "cosine", "constant")
#: The hyperparameters OpenAI's fine-tuning API takes (``method.supervised.hyperparameters`` and
#: ``seed``); every other setting is the PEFT trainer's own.
OPENAI_HYPERPARAMETERS = ("epochs", "batch_size", "learning_rate_multiplier", "seed")


@dataclass(frozen=True)
class Hyperparameters:
    """Training settings with their defaults."""

    epochs: int = 1
    max_steps: int = 0
    learning_rate: float = 2e-4
    batch_size: int = 4
    max_sequence_tokens: int = 256
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ()
    seed: int = 0
    eval_interval_steps: int = 10
    gradient_accumulation_steps: int = 1
    #: 0 = 5 % of the steps (at least 1).
    warmup_steps: int = 0
    learning_rate_schedule: str = "linear"
    #: Validation passes without a lower loss before stopping; 0 = never stop early.
    early_stopping_patience: int = 0
    #: OpenAI only: the factor on OpenAI's learning rate; 0 = "auto".
    learning_rate_multiplier: float = 0.0

    @classmethod
    def for_openai(
        cls, *, epochs: int = 0, batch_size: int = 0, learning_rate_multiplier: float = 0.0, seed: int = 0
    ) -> Hyperparameters:
        """OpenAI's settings, 0 meaning "auto"; the fields OpenAI cannot use are 0, so a job shows none it ignores."""
        return cls(
            epochs=epochs,
            max_steps=0,
            learning_rate=0.0,
            batch_size=batch_size,
            max_sequence_tokens=0,
            lora_r=0,
            lora_alpha=0.0,
            seed=seed,
            eval_interval_steps=0,
            gradient_accumulation_steps=0,
            learning_rate_schedule="",
            learning_rate_multiplier=learning_rate_multiplier,
        )

    def validate(self, backend: str = "peft") -> Hyperparameters:
        """Every field in its backend's range; InvalidArgument names the first that is not."""
        checks = self._openai_checks() if backend == "openai" else self._peft_checks()
        for name, ok, reason in checks:
            if not ok:
                raise InvalidArgument(f"hyperparameters.{name}", f"{reason}, got {getattr(self, name)}")
        for module in self.lora_target_modules:
            if not re.fullmatch(r"[A-Za-z0-9_.]+", module):
                raise InvalidArgument(
                    "hyperparameters.lora_target_modules", f"{module!r} is not a module name"
                )
        return self

    def _peft_checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("epochs", 1 <= self.epochs <= 100, "must be between 1 and 100"),
            ("max_steps", 0 <= self.max_steps <= 1_000_000, "must be between 0 and 1000000"),
            ("learning_rate", 0 < self.learning_rate <= 1, "must be greater than 0 and at most 1"),
            ("batch_size", 1 <= self.batch_size <= 256, "must be between 1 and 256"),
            ("max_sequence_tokens", 16 <= self.max_sequence_tokens <= 8192, "must be between 16 and 8192"),
            ("lora_r", 1 <= self.lora_r <= 256, "must be between 1 and 256 (r < 1 is no adapter at all)"),
            ("lora_alpha", self.lora_alpha > 0, "must be positive"),
            ("lora_dropout", 0 <= self.lora_dropout <= 0.9, "must be between 0 and 0.9"),
            ("eval_interval_steps", 1 <= self.eval_interval_steps <= 1_000_000, "must be at least 1"),
            (
                "gradient_accumulation_steps",
                1 <= self.gradient_accumulation_steps <= 256,
                "must be between 1 and 256",
            ),
            ("warmup_steps", 0 <= self.warmup_steps <= 1_000_000, "must be between 0 and 1000000"),
            (
                "learning_rate_schedule",
                self.learning_rate_schedule in SCHEDULES,
                f"must be one of {', '.join(SCHEDULES)}",
            ),
            (
                "early_stopping_patience",
                0 <= self.early_stopping_patience <= 1000,
                "must be between 0 and 1000",
            ),
        ]

    def _openai_checks(self) -> list[tuple[str, bool, str]]:
        """The ranges OpenAI accepts (0 = "auto")."""
        return [
            ("epochs", 0 <= self.epochs <= 50, "must be between 1 and 50 (0 = auto)"),
            ("batch_size", 0 <= self.batch_size <= 256, "must be between 1 and 256 (0 = auto)"),
            (
                "learning_rate_multiplier",
                0 <= self.learning_rate_multiplier <= 10,
                "must be greater than 0 and at most 10 (0 = auto)",
            ),
        ]


def refuse_unusable_fields(backend: str, given: Iterable[str]) -> None:
    """Refuse a request field the backend cannot use, rather than drop it and train something else.

    ``given`` holds the request's set (non-zero) field paths, e.g. ``hyperparameters.lora_r``.
    """
    for path in given:
        area, _, name = path.partition(".")
        if backend == "openai" and (area != "hyperparameters" or name not in OPENAI_HYPERPARAMETERS):
            raise InvalidArgument(
                path,
                "the openai backend cannot use it (OpenAI takes only hyperparameters "
                f"{', '.join(OPENAI_HYPERPARAMETERS)}); leave it unset",
            )
        if backend == "peft" and path == "hyperparameters.learning_rate_multiplier":
            raise InvalidArgument(
                path, "only the openai backend uses it; the peft backend takes hyperparameters.learning_rate"
            )


@dataclass(frozen=True)
class JobSpec:
    """A validated CreateJob request; stored as JSON with the job."""

    backend: str
    dataset_path: str
    validation_dataset_path: str
    base_model: str
    adapter_name: str
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    export_merged: bool = False
    compute: Compute = field(default_factory=Compute)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hyperparameters"]["lora_target_modules"] = list(self.hyperparameters.lora_target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        hp = dict(data["hyperparameters"])
        hp["lora_target_modules"] = tuple(hp.get("lora_target_modules", ()))
        compute = Compute(**data.get("compute", {}))  # jobs stored before compute existed: the defaults
        return cls(**{**data, "hyperparameters": Hyperparameters(**hp), "compute": compute})


def relative(home: Path, path: Path) -> str:
    return str(path.relative_to(home.resolve()))


def known_sources() -> list[str]:
    """The built-in base-model names (``tiny`` and those ``talklike.models.resolve`` ships)."""
    return ["tiny", *BUILTIN_SOURCES]


def check_base_model(home: Path, raw: str, roots: Sequence[Path]) -> str:
    """A known source, a cached hub id, or a model path inside ``<home>/models`` or an allowed root.

    Paths come back absolute (relative ones are relative to ``<home>/models``), so the worker
    resolves the very folder checked here. Anything else on the machine (``/etc``,
    ``../../etc``) is refused: a job must not read what the operator did not offer.
    """
    if raw in known_sources():
        return raw
    check_path_text(raw, "base_model")
    models = (home / "models").resolve()
    as_given = Path(raw).expanduser()
    if HUB_ID.match(raw) and not as_given.is_absolute() and not (models / raw).exists():
        if as_given.exists():
            raise InvalidArgument(
                "base_model",
                f"{quote(raw)} names a hub id and a path in the service's working folder; give an absolute path",
            )
        return raw  # a hub id: resolved from the local cache only, never downloaded
    resolved = (as_given if as_given.is_absolute() else models / as_given).resolve()
    allowed = [models, *(root.expanduser().resolve() for root in roots)]
    if not any(resolved == root or root in resolved.parents for root in allowed):
        raise InvalidArgument(
            "base_model",
            f"{quote(raw)} is neither a known source ({', '.join(known_sources())}) nor a model under "
            f"{', '.join(str(root) for root in allowed)}; put the model there or ask the operator to add its "
            "folder to TALKLIKE_TRAINING_MODEL_ROOTS",
        )
    if not resolved.exists():
        raise InvalidArgument("base_model", f"{quote(raw)} does not exist ({resolved})")
    return str(resolved)


def build_spec(
    home: Path,
    *,
    backend: str,
    dataset_path: str,
    validation_dataset_path: str,
    base_model: str,
    adapter_name: str,
    hyperparameters: Hyperparameters,
    export_merged: bool = False,
    model_roots: Sequence[Path] = (),
    given_fields: Iterable[str] = (),
    compute: Compute | None = None,
) -> JobSpec:
    """Check a CreateJob request; paths become relative to the data home.

    ``given_fields``: the request's set field paths, refused when the backend cannot use them.
    """
    if backend not in BACKENDS:
        raise InvalidArgument("backend", f"must be one of {', '.join(BACKENDS)}")
    refuse_unusable_fields(backend, given_fields)
    compute = (compute or Compute()).validate()
    if compute.quantization == "nf4":
        if export_merged:
            raise InvalidArgument(
                "export_merged",
                "a 4-bit base cannot be merged losslessly; train without compute.quantization to merge",
            )
        require_bitsandbytes()
    dataset = resolve_in_home(home, dataset_path, "dataset_path")
    refuse_directory(dataset, dataset_path, "dataset_path")
    if not dataset.is_file():
        raise InvalidArgument(
            "dataset_path", f"{quote(dataset_path)} does not exist in the data home; generate it first"
        )
    validation = ""
    if validation_dataset_path:
        val = resolve_in_home(home, validation_dataset_path, "validation_dataset_path")
        refuse_directory(val, validation_dataset_path, "validation_dataset_path")
        if not val.is_file():
            raise InvalidArgument(
                "validation_dataset_path", f"{quote(validation_dataset_path)} does not exist"
            )
        validation = relative(home, val)
    elif (dataset.parent / "val.jsonl").is_file() and dataset.name != "val.jsonl":
        validation = relative(home, dataset.parent / "val.jsonl")
    if not base_model:
        raise InvalidArgument("base_model", "is required, e.g. tiny, smollm2 or a local model directory")
    if backend == "peft":
        base_model = check_base_model(home, base_model, model_roots)
    if adapter_name and (not ADAPTER_NAME.match(adapter_name) or adapter_name in (".", "..")):
        raise InvalidArgument("adapter_name", "use 1-64 letters, digits, '_', '.', '-' (not '.' or '..')")
    return JobSpec(
        backend=backend,
        dataset_path=relative(home, dataset),
        validation_dataset_path=validation,
        base_model=base_model,
        adapter_name=adapter_name,
        hyperparameters=hyperparameters.validate(backend),
        export_merged=export_merged,
        compute=compute,
    )
