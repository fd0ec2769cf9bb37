"""Device, precision and quantization choices, and the memory refusal, with fake device properties.

No test here needs a GPU: the properties a worker would read from torch are given. The tests at
the end that do need one (bf16 and 4-bit on a real GPU) skip with the reason when there is none.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.training.compute import (
    GIB,
    Compute,
    DeviceProperties,
    ModelShape,
    Workload,
    check_fits,
    estimate_memory,
    meta_skeleton,
    plan,
    shape_of,
)
from talklike.training.spec import Hyperparameters, JobSpec

H100 = DeviceProperties("NVIDIA H100 80GB HBM3", 8, 80 * GIB, 79 * GIB, bf16_supported=True)
T4 = DeviceProperties("Tesla T4", 1, 15 * GIB, 14 * GIB, bf16_supported=False)
#: A 7B Llama-like model (Mistral 7B's shape), LoRA r=16 on every linear projection.
SEVEN_B = ModelShape(
    parameters=7_241_732_096,
    linear_parameters=6_979_321_856,
    lora_parameters=41_943_040,
    hidden_size=4096,
    intermediate_size=14336,
    layers=32,
    attention_heads=32,
    vocabulary=32000,
)


def test_auto_uses_cuda_when_present_and_falls_back_to_cpu() -> None:
    assert plan(Compute(), None).device == "cpu"
    on_gpu = plan(Compute(), H100)
    assert (on_gpu.device, on_gpu.precision, on_gpu.weights_dtype, on_gpu.grad_scaler) == (
        "cuda",
        "bf16",
        "bfloat16",
        False,
    )
    assert plan(Compute(device="cpu"), H100).device == "cpu"  # asked for the CPU: the GPU is not used
    assert plan(Compute(), H100, index=3).torch_device == "cuda:3"


def test_fp16_with_a_gradient_scaler_where_bf16_is_not_supported() -> None:
    chosen = plan(Compute(), T4)
    assert (chosen.precision, chosen.weights_dtype, chosen.grad_scaler) == ("fp16", "float16", True)
    with pytest.raises(FailedPrecondition, match="Tesla T4 does not support bf16"):
        plan(Compute(precision="bf16"), T4)
    assert plan(Compute(precision="fp32"), T4).grad_scaler is False


def test_a_cpu_without_bf16_instructions_trains_in_fp32_without_autocast() -> None:
    torch = pytest.importorskip("torch")
    chosen = plan(Compute(device="cpu"), None, cpu_bf16=False)
    assert (chosen.precision, chosen.weights_dtype, chosen.torch_device) == ("fp32", "float32", "cpu")
    with chosen.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(FailedPrecondition, match=r"no bf16 instructions .* use fp32 or auto"):
        plan(Compute(precision="bf16"), None, cpu_bf16=False)


def test_a_cpu_with_bf16_instructions_trains_in_bf16_unless_asked_for_fp32() -> None:
    torch = pytest.importorskip("torch")
    chosen = plan(Compute(), None, cpu_bf16=True)
    assert (chosen.device, chosen.precision, chosen.weights_dtype, chosen.grad_scaler) == (
        "cpu",
        "bf16",
        "bfloat16",
        False,
    )
    with chosen.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert plan(Compute(device="cpu", precision="fp32"), None, cpu_bf16=True).precision == "fp32"


def test_cuda_without_a_gpu_and_too_many_gpus_fail_clearly() -> None:
    with pytest.raises(FailedPrecondition, match="sees no CUDA device"):
        plan(Compute(device="cuda"), None)
    with pytest.raises(FailedPrecondition, match="gpu_count is 2 but the worker sees 1 GPU"):
        plan(Compute(device="cuda", gpu_count=2), T4)


def test_contradictory_requests_are_refused_naming_the_field() -> None:
    cases = {
        "compute.quantization": Compute(device="cpu", quantization="nf4"),
        "compute.precision": Compute(device="cpu", precision="fp16"),
        "compute.gpu_count": Compute(device="cpu", gpu_count=2),
        "compute.device": Compute(device="tpu"),
    }
    for field, compute in cases.items():
        with pytest.raises(InvalidArgument) as error:
            compute.validate()
        assert error.value.field == field
    with pytest.raises(InvalidArgument, match="between 1 and 16"):
        Compute(gpu_count=17).validate()


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here"
)
def test_4bit_without_bitsandbytes_is_a_failed_precondition_naming_it() -> None:
    with pytest.raises(FailedPrecondition, match="needs the bitsandbytes package"):
        plan(Compute(quantization="nf4"), H100)


def test_the_estimate_adds_up_weights_lora_activations_and_logits() -> None:
    work = Workload(
        batch_size=4, sequence_tokens=512, precision="bf16", quantization="none", gradient_checkpointing=False
    )
    estimate = estimate_memory(SEVEN_B, work)
    assert estimate.weights == SEVEN_B.parameters * 2
    assert estimate.lora == SEVEN_B.lora_parameters * 16  # weight, gradient, two AdamW moments in fp32
    assert 13 * GIB < estimate.weights < 14 * GIB
    checkpointed = estimate_memory(SEVEN_B, dataclasses.replace(work, gradient_checkpointing=True))
    assert checkpointed.activations < estimate.activations / 10
    nf4 = estimate_memory(SEVEN_B, dataclasses.replace(work, quantization="nf4"))
    assert 4 * GIB < nf4.weights < 5 * GIB  # ~0.52 bytes per quantized weight, the rest in fp32
    fp32 = estimate_memory(SEVEN_B, dataclasses.replace(work, precision="fp32"))
    assert fp32.weights == 2 * estimate.weights and fp32.activations == 2 * estimate.activations


def test_a_job_that_does_not_fit_is_refused_with_the_numbers_and_a_setting_that_fits() -> None:
    work = Workload(
        batch_size=8,
        sequence_tokens=1024,
        precision="fp16",
        quantization="none",
        gradient_checkpointing=False,
    )
    with pytest.raises(FailedPrecondition) as error:
        check_fits(SEVEN_B, work, 1, T4, 0.9)
    message = str(error.value)
    assert "of GPU memory (weights 13.49 GiB" in message
    assert "Tesla T4 has 14.00 GiB free of 15.00 GiB" in message
    assert "it would fit with compute.quantization nf4" in message  # fp16 weights alone exceed the budget
    # On an H100 a job of half the batch and length fits as asked.
    smaller = dataclasses.replace(work, batch_size=4, sequence_tokens=512)
    assert check_fits(SEVEN_B, smaller, 1, H100, 0.9).total < 0.9 * H100.free_bytes
    # Where checkpointing and a smaller batch are enough, that is what it suggests: same examples per step.
    mid = dataclasses.replace(H100, name="40 GB GPU", free_bytes=40 * GIB, total_bytes=40 * GIB)
    with pytest.raises(
        FailedPrecondition, match=r"it would fit with compute\.gradient_checkpointing true \(about"
    ):
        check_fits(SEVEN_B, work, 2, mid, 0.9)
    with pytest.raises(FailedPrecondition, match="batch_size 16 and gradient_accumulation_steps 4"):
        check_fits(SEVEN_B, dataclasses.replace(work, batch_size=32), 2, mid, 0.9)


def test_nothing_fits_says_so() -> None:
    tiny_gpu = dataclasses.replace(T4, free_bytes=GIB // 2)
    work = Workload(
        batch_size=1, sequence_tokens=64, precision="fp16", quantization="nf4", gradient_checkpointing=True
    )
    with pytest.raises(FailedPrecondition, match="no setting of this job fits"):
        check_fits(SEVEN_B, work, 1, tiny_gpu, 0.9)


def test_the_shape_comes_from_the_config_without_loading_weights(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from talklike.models import resolve

    skeleton = meta_skeleton(resolve("tiny", tmp_path / "models").path)
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    shape = shape_of(skeleton, ["q_proj", "v_proj"], 4)
    config = skeleton.config
    assert shape.layers == config.num_hidden_layers and shape.vocabulary == config.vocab_size
    hidden, head = config.hidden_size, config.hidden_size // config.num_attention_heads
    per_layer = 4 * (hidden + hidden) + 4 * (hidden + config.num_key_value_heads * head)  # q_proj, v_proj
    assert shape.lora_parameters == per_layer * config.num_hidden_layers
    assert 0 < shape.linear_parameters < shape.parameters


def _job(home: Path, compute: Compute, **hp: Any) -> JobSpec:
    return JobSpec(
        backend="peft",
        dataset_path="datasets/persona/train.jsonl",
        validation_dataset_path="",
        base_model="tiny",
        adapter_name="a",
        hyperparameters=Hyperparameters(**hp),
        compute=compute,
    )


def test_the_worker_refuses_before_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake properties of a nearly full GPU: the job fails before any weight is read."""
    pytest.importorskip("torch")
    from talklike.training import peft_trainer

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded although it cannot fit")

    monkeypatch.setattr(peft_trainer, "load_model", no_load)
    full = dataclasses.replace(H100, free_bytes=GIB // 2)
    events: list[str] = []
    trainer = peft_trainer.PeftTrainer(
        _job(tmp_path, Compute(device="cuda")),
        tmp_path,
        tmp_path / "jobs" / "j",
        lambda kind, message, **data: events.append(message),
        lambda: False,
        probe=lambda: full,
    )
    with pytest.raises(FailedPrecondition, match=r"NVIDIA H100 80GB HBM3 has 0\.50 GiB free"):
        trainer.prepare()
    assert events == ["training on cuda (NVIDIA H100 80GB HBM3, 8 visible) in bf16"]


def test_cuda_jobs_fail_clearly_on_a_machine_without_one(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from talklike.training.peft_trainer import PeftTrainer

    trainer = PeftTrainer(
        _job(tmp_path, Compute(device="cuda")),
        tmp_path,
        tmp_path / "jobs" / "j",
        lambda *a, **k: None,
        lambda: False,
        probe=lambda: None,
    )
    with pytest.raises(FailedPrecondition, match="sees no CUDA device"):
        trainer.prepare()


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (CI and this machine have none)")
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_a_tiny_job_trains_on_the_gpu(persona_home: Path, quantization: str) -> None:
    if quantization == "nf4" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("4-bit needs the bitsandbytes package, not installed here")
    from talklike.training.peft_trainer import PeftTrainer

    tmp_path = persona_home
    spec = dataclasses.replace(
        _job(
            tmp_path,
            Compute(device="cuda", quantization=quantization, gradient_checkpointing=True),
            max_steps=6,
        ),
        validation_dataset_path="datasets/persona/val.jsonl",
    )
    trainer = PeftTrainer(spec, tmp_path, tmp_path / "jobs" / "gpu", lambda *a, **k: None, lambda: False)
    model, tokenizer, train, val = trainer.prepare()
    result = trainer.run(model, tokenizer, train, val)
    assert result is not None and result.steps == 6
    assert result.eval_loss is not None and result.initial_eval_loss is not None
    assert result.eval_loss < result.initial_eval_loss


def test_a_bf16_forward_pass_skips_peft_input_casts_and_computes_the_same() -> None:
    """Under autocast PEFT's bf16 → fp32 cast of a LoRA layer's input is undone at once; skipping
    it must change no number, in the output or in the LoRA gradients, and only inside the pass."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    chosen = plan(Compute(), None, cpu_bf16=True)
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    model = peft.get_peft_model(base.to(torch.bfloat16), peft.LoraConfig(r=4, target_modules=["0", "2"]))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)  # PEFT starts B at zero: make the LoRA path count
    seen: list[torch.dtype] = []
    lora_a = model.base_model.model[0].lora_A["default"]
    lora_a.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    x = torch.randn(3, 16, dtype=torch.bfloat16)

    def run(skip_casts: bool) -> tuple[Any, list[Any]]:
        context = chosen.forward_pass(model) if skip_casts else chosen.autocast()
        with context:
            out = model(x)
        out.float().pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        model.zero_grad(set_to_none=True)
        return out, grads

    cast_out, cast_grads = run(skip_casts=False)
    plain_out, plain_grads = run(skip_casts=True)
    assert seen == [torch.float32, torch.bfloat16]  # PEFT's cast, then none
    assert torch.equal(cast_out, plain_out)
    assert all(torch.equal(a, b) for a, b in zip(cast_grads, plain_grads, strict=True))
    assert model.base_model.model[0].cast_input_dtype_enabled  # restored after the pass
