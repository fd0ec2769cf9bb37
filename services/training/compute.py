"""Where and how a PEFT job computes: device, precision, 4-bit quantization, and whether it fits.

The choices are made in the worker, where the GPU is, from a request (``Compute``) and the
device's properties (``DeviceProperties``, read from torch or given by a test). Before the model
loads, ``estimate_memory`` adds up what training will hold on one GPU — the base weights at the
chosen precision, the LoRA weights with their gradients and AdamW state, the activations at
``batch_size × max_sequence_tokens`` and the output head's logits — and ``check_fits`` refuses
a job that would not fit, with the numbers and the setting that would make it fit, rather than
let it die of an out-of-memory error minutes into the load.

torch and bitsandbytes are imported lazily: the training service itself needs neither a GPU nor
bitsandbytes, and bitsandbytes is not a dependency at all until someone asks for 4-bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.models.precision import cpu_multiplies_bf16

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
QUANTIZATIONS = ("none", "nf4")
MAX_GPUS = 16
GIB = 1 << 30
#: CUDA context, cuBLAS workspaces and the caching allocator's slack: memory a job never sees.
CUDA_OVERHEAD_BYTES = 3 * GIB // 4
#: Bytes per LoRA parameter while training: fp32 weight, fp32 gradient, AdamW's two fp32 moments.
LORA_BYTES_PER_PARAMETER = 16


@dataclass(frozen=True)
class Compute:
    """A job's compute request, defaults filled in."""

    device: str = "auto"
    precision: str = "auto"
    quantization: str = "none"
    gradient_checkpointing: bool = False
    gpu_count: int = 1

    def validate(self) -> Compute:
        """Each field in range and no contradictory pair; InvalidArgument names the field."""
        choices = (("device", DEVICES), ("precision", PRECISIONS), ("quantization", QUANTIZATIONS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise InvalidArgument(f"compute.{name}", f"must be one of {', '.join(allowed)}")
        if not 1 <= self.gpu_count <= MAX_GPUS:
            raise InvalidArgument(
                "compute.gpu_count", f"must be between 1 and {MAX_GPUS}, got {self.gpu_count}"
            )
        if self.device == "cpu":
            if self.quantization != "none":
                raise InvalidArgument(
                    "compute.quantization", "4-bit quantization needs CUDA; set compute.device cuda"
                )
            if self.precision == "fp16":
                raise InvalidArgument("compute.precision", "the CPU trains in fp32 or bf16; use auto")
            if self.gpu_count > 1:
                raise InvalidArgument("compute.gpu_count", "several GPUs need compute.device cuda")
        if self.quantization == "nf4" and self.precision == "fp32":
            raise InvalidArgument(
                "compute.precision", "4-bit quantization computes in bf16 or fp16; use auto"
            )
        return self


def require_bitsandbytes() -> None:
    """FAILED_PRECONDITION naming the package when 4-bit is asked of an environment without it."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise FailedPrecondition(
            "compute.quantization nf4 needs the bitsandbytes package, which is not installed where "
            "the training worker runs: install it (pip install bitsandbytes, CUDA only) or leave "
            "quantization unset"
        )


@dataclass(frozen=True)
class DeviceProperties:
    """What the worker knows about its GPUs (all of one kind on a node)."""

    name: str
    count: int
    total_bytes: int
    free_bytes: int
    bf16_supported: bool


def probe_cuda(index: int = 0) -> DeviceProperties | None:
    """The node's GPUs as torch sees them; None when there is no usable CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(index)
    return DeviceProperties(
        name=torch.cuda.get_device_name(index),
        count=torch.cuda.device_count(),
        total_bytes=int(total),
        free_bytes=int(free),
        bf16_supported=bool(torch.cuda.is_bf16_supported()),
    )


@dataclass(frozen=True)
class Plan:
    """The device and number formats a job trains with."""

    device: str
    #: fp32, bf16 or fp16: the autocast dtype (fp32 = no autocast).
    precision: str
    #: The dtype the frozen base weights are loaded in (torch attribute name).
    weights_dtype: str
    #: fp16 needs a gradient scaler so small gradients do not flush to zero.
    grad_scaler: bool
    quantization: str
    #: The CUDA device of this process (its local rank under torchrun).
    index: int = 0

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}" if self.device == "cuda" else "cpu"

    def autocast(self) -> Any:
        """The forward pass's autocast context (a no-op in fp32)."""
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device, dtype=dtype or torch.float32, enabled=dtype is not None)

    @contextlib.contextmanager
    def forward_pass(self, model: Any) -> Iterator[None]:
        """The autocast context, with PEFT's cast of each LoRA layer's input switched off.

        PEFT casts a layer's input to the LoRA weights' dtype (bf16 → fp32), and autocast casts it
        straight back to bf16 for the product: a lossless round trip, twice per layer and pass. Without
        it a Gemma 3 270M step on the demo's batches took 1.39 s instead of 1.48 s (alternated, 12 steps
        each), with the same losses to the last bit.
        """
        from peft.helpers import disable_input_dtype_casting

        with self.autocast(), disable_input_dtype_casting(model, active=self.precision != "fp32"):
            yield

    def move(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {key: value.to(self.torch_device) for key, value in batch.items()}

    def describe(self, props: DeviceProperties | None) -> str:
        where = (
            f"{self.device} ({props.name}, {props.count} visible)"
            if props and self.device == "cuda"
            else self.device
        )
        quantized = ", base weights in 4-bit NF4" if self.quantization == "nf4" else ""
        scaler = " with a gradient scaler" if self.grad_scaler else ""
        return f"training on {where} in {self.precision}{scaler}{quantized}"


#: A CPU job in fp32 (and what evaluation assumes unless told otherwise).
CPU = Plan("cpu", "fp32", "float32", False, "none")
#: A CPU job on a CPU that multiplies bf16 in hardware: bf16 base weights and autocast, LoRA in fp32.
CPU_BF16 = Plan("cpu", "bf16", "bfloat16", False, "none")


def plan(
    compute: Compute, props: DeviceProperties | None, index: int = 0, cpu_bf16: bool | None = None
) -> Plan:
    """Resolve auto device and precision against what the worker sees; refuse what it cannot do.

    ``cpu_bf16`` says whether the CPU multiplies bf16 natively (read from the CPU when None).
    """
    device = compute.device
    if device == "auto":
        device = "cuda" if props is not None else "cpu"
    if device == "cuda" and props is None:
        raise FailedPrecondition(
            "compute.device is cuda but the training worker sees no CUDA device; run the service on a GPU "
            "machine, or use the kubernetes launcher, whose Jobs ask for GPUs (TALKLIKE_TRAINING_LAUNCHER), "
            "or set compute.device auto or cpu"
        )
    if device == "cpu":
        if compute.gpu_count > 1:
            raise FailedPrecondition(
                f"compute.gpu_count is {compute.gpu_count} but the training worker sees no CUDA device"
            )
        native = cpu_multiplies_bf16() if cpu_bf16 is None else cpu_bf16
        if compute.precision == "bf16" and not native:
            raise FailedPrecondition(
                "compute.precision bf16: this CPU has no bf16 instructions (AMX or AVX512-BF16), so bf16 "
                "would be emulated and slower than fp32; use fp32 or auto"
            )
        return CPU_BF16 if native and compute.precision in ("auto", "bf16") else CPU
    assert props is not None
    if compute.gpu_count > props.count:
        raise FailedPrecondition(
            f"compute.gpu_count is {compute.gpu_count} but the worker sees {props.count} GPU(s) ({props.name})"
        )
    precision = compute.precision
    if precision == "auto":
        precision = "bf16" if props.bf16_supported else "fp16"
    if precision == "bf16" and not props.bf16_supported:
        raise FailedPrecondition(
            f"compute.precision bf16: {props.name} does not support bf16; use fp16 or auto"
        )
    weights = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision]
    if compute.quantization == "nf4":
        require_bitsandbytes()
    return Plan("cuda", precision, weights, precision == "fp16", compute.quantization, index)


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs of a model, read from its config on the meta device (no weights)."""

    parameters: int
    #: Parameters in the linear layers of the decoder (what 4-bit quantizes).
    linear_parameters: int
    #: Trainable parameters LoRA adds for the chosen rank and modules.
    lora_parameters: int
    hidden_size: int
    intermediate_size: int
    layers: int
    attention_heads: int
    vocabulary: int


def meta_skeleton(path: Path) -> Any:
    """The model at ``path`` built on the meta device: its modules and shapes, no weights loaded."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))


def shape_of(model: Any, targets: list[str], rank: int) -> ModelShape:
    """A model's ``ModelShape`` (LoRA adds ``rank × (in + out)`` per adapted linear layer)."""
    import torch

    linear = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            linear += module.weight.numel()
            if name.rsplit(".", 1)[-1] in targets:
                lora += rank * (module.in_features + module.out_features)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = int(config.hidden_size)
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        linear_parameters=linear,
        lora_parameters=lora,
        hidden_size=hidden,
        intermediate_size=int(getattr(config, "intermediate_size", None) or 4 * hidden),
        layers=int(config.num_hidden_layers),
        attention_heads=int(config.num_attention_heads),
        vocabulary=int(config.vocab_size),
    )


@dataclass(frozen=True)
class Workload:
    """The settings that change the memory a step needs."""

    batch_size: int
    sequence_tokens: int
    precision: str
    quantization: str
    gradient_checkpointing: bool


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one GPU holds while training, by part."""

    weights: int
    lora: int
    activations: int
    logits: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.activations + self.logits + self.overhead

    def describe(self) -> str:
        parts = ("weights", "lora", "activations", "logits", "overhead")
        return ", ".join(f"{name} {gib(getattr(self, name))}" for name in parts)


def gib(count: int) -> str:
    return f"{count / GIB:.2f} GiB"


def estimate_memory(shape: ModelShape, work: Workload) -> MemoryEstimate:
    """An upper-bound estimate of one GPU's memory for a LoRA step.

    Activations per token and layer, at the autocast width ``e``: the attention block keeps about
    7 hidden-size tensors and (eager attention) one score per head and key, the gated MLP 2
    hidden-size and 4 intermediate-size ones. With gradient checkpointing a layer keeps only its
    input, plus one layer's full set while it is recomputed. Every position is counted (padding
    and prompt tokens included) and the head's logits at every position: the loss computes them
    only at answer positions, so real use is lower.
    """
    half = work.precision in ("bf16", "fp16")
    e = 2 if half else 4
    if work.quantization == "nf4":
        # NF4 packs two weights a byte, plus an fp8 scale per 64 weights and an fp32 scale per
        # 256 of those (double quantization); prepare_model_for_kbit_training casts every other
        # weight (embeddings, norms, head) to fp32.
        quantized = shape.linear_parameters
        weights = quantized // 2 + quantized // 64 + quantized // (64 * 256) * 4
        weights += (shape.parameters - quantized) * 4
    else:
        weights = shape.parameters * e
    tokens = work.batch_size * work.sequence_tokens
    per_layer = (
        9 * shape.hidden_size + 4 * shape.intermediate_size + shape.attention_heads * work.sequence_tokens
    ) * e
    if work.gradient_checkpointing:
        activations = tokens * (shape.layers * shape.hidden_size * e + per_layer)
    else:
        activations = tokens * shape.layers * per_layer
    # Logits at the autocast width, their fp32 copy for the loss and its gradient.
    logits = tokens * shape.vocabulary * (e + 4 + 4)
    return MemoryEstimate(
        weights=weights,
        lora=shape.lora_parameters * LORA_BYTES_PER_PARAMETER,
        activations=activations,
        logits=logits,
        overhead=CUDA_OVERHEAD_BYTES,
    )


def _alternatives(work: Workload, accumulation: int) -> list[tuple[str, Workload]]:
    """Settings that lower the memory, the cheapest in quality and speed first."""
    options: list[tuple[str, Workload]] = []
    if not work.gradient_checkpointing:
        options.append(
            ("compute.gradient_checkpointing true", dataclasses.replace(work, gradient_checkpointing=True))
        )
    checkpointed = dataclasses.replace(work, gradient_checkpointing=True)
    batch = work.batch_size
    while batch > 1:
        batch //= 2
        factor = work.batch_size // batch
        options.append(
            (
                f"compute.gradient_checkpointing true with hyperparameters.batch_size {batch} and "
                f"gradient_accumulation_steps {accumulation * factor} (the same examples per step)",
                dataclasses.replace(checkpointed, batch_size=batch),
            )
        )
    if work.quantization == "none":
        options.append(
            (
                "compute.quantization nf4 with compute.gradient_checkpointing true and hyperparameters.batch_size 1",
                dataclasses.replace(checkpointed, batch_size=1, quantization="nf4"),
            )
        )
    return options


def check_fits(
    shape: ModelShape, work: Workload, accumulation: int, props: DeviceProperties, usable_fraction: float
) -> MemoryEstimate:
    """The estimate, or FAILED_PRECONDITION with the numbers and the first setting that would fit."""
    estimate = estimate_memory(shape, work)
    budget = int(props.free_bytes * usable_fraction)
    if estimate.total <= budget:
        return estimate
    fits = next(
        (
            (setting, estimate_memory(shape, option))
            for setting, option in _alternatives(work, accumulation)
            if estimate_memory(shape, option).total <= budget
        ),
        None,
    )
    advice = (
        f"it would fit with {fits[0]} (about {gib(fits[1].total)})"
        if fits
        else "no setting of this job fits: use a GPU with more memory, a smaller base model or a lower "
        "hyperparameters.max_sequence_tokens"
    )
    raise FailedPrecondition(
        f"the job needs about {gib(estimate.total)} of GPU memory ({estimate.describe()}; batch_size "
        f"{work.batch_size} × {work.sequence_tokens} tokens, {work.precision}"
        f"{', nf4' if work.quantization == 'nf4' else ''}"
        f"{', gradient checkpointing' if work.gradient_checkpointing else ''}) but {props.name} has "
        f"{gib(props.free_bytes)} free of {gib(props.total_bytes)} (usable: {usable_fraction:.0%} of free, "
        f"{gib(budget)}); {advice}"
    )


def load_model(resolved: Any, chosen: Plan, gradient_checkpointing: bool) -> tuple[Any, Any]:
    """The base model placed and stored as planned (4-bit through bitsandbytes), and its tokenizer."""
    from talklike.models import load

    if chosen.quantization != "nf4":
        model, tokenizer = load(resolved, chosen.torch_device, chosen.weights_dtype)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model, tokenizer
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    compute_dtype = getattr(torch, chosen.weights_dtype)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    model = AutoModelForCausalLM.from_pretrained(
        resolved.path, quantization_config=quantization, dtype=compute_dtype, device_map={"": chosen.index}
    )
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
