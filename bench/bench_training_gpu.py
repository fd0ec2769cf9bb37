"""LoRA training on a GPU against the CPU: steps/s, peak GPU memory and eval loss after equal steps.

For each model (``--models``, default smollm2 and gemma3-270m) the same job — the same examples,
LoRA r=16 on all linear projections, batch 4, ≤ 128 tokens, the same seed and steps — runs with
talklike's PeftTrainer on the CPU in fp32 (the baseline, measured in the same run; ``--cpu-steps``
0 skips it) and on CUDA in bf16 (fp16 with a gradient scaler where bf16 is not supported) and in
4-bit NF4 (when bitsandbytes is installed). It prints, per run: steps/s and its ratio to the CPU's,
the peak GPU memory torch allocated, the worker's memory estimate, and the validation loss before
and after. Without a GPU only the CPU baseline runs, and it says so.

    python bench/bench_training_gpu.py --steps 60
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_training import write_dataset


def run(home: Path, base: str, steps: int, compute: Any, label: str) -> dict[str, Any]:
    import torch
    from talklike.training.peft_trainer import PeftTrainer
    from talklike.training.spec import Hyperparameters, JobSpec

    spec = JobSpec(
        "peft",
        "data/train.jsonl",
        "data/val.jsonl",
        base,
        "bench",
        Hyperparameters(
            max_steps=steps,
            batch_size=4,
            max_sequence_tokens=128,
            lora_r=16,
            lora_alpha=32,
            learning_rate=3e-4,
            eval_interval_steps=steps,
            seed=1,
        ),
        compute=compute,
    )
    notes: list[str] = []
    trainer = PeftTrainer(
        spec,
        home,
        home / "jobs" / f"bench-{base}-{label}",
        lambda kind, message, **data: notes.append(message),
        lambda: False,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model, tokenizer, train, val = trainer.prepare()
    started = time.perf_counter()
    result = trainer.run(model, tokenizer, train, val)
    elapsed = time.perf_counter() - started
    assert result is not None
    return {
        "model": base,
        "run": label,
        "steps_per_s": steps / elapsed,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "estimate": next((n for n in notes if n.startswith("GPU memory estimate")), ""),
        "plan": next((n for n in notes if n.startswith("training on")), ""),
        "initial_eval_loss": result.initial_eval_loss,
        "eval_loss": result.eval_loss,
    }


def main() -> None:
    import torch
    from talklike.training.compute import Compute

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2,gemma3-270m")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument(
        "--cpu-steps", type=int, default=-1, help="CPU baseline steps (-1 = --steps, 0 = none)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    runs: list[tuple[str, Compute]] = []
    if cuda:
        runs.append(("cuda-auto", Compute(device="cuda")))
        if importlib.util.find_spec("bitsandbytes") is not None:
            runs.append(("cuda-nf4", Compute(device="cuda", quantization="nf4")))
        else:
            print("bitsandbytes is not installed: no 4-bit run")
    else:
        print("no CUDA device: only the CPU baseline runs")
    cpu_steps = args.steps if args.cpu_steps < 0 else args.cpu_steps
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "data").mkdir()
        write_dataset(home / "data" / "train.jsonl")
        # The generator's first 32 examples again: the loss compares the runs with each other; it is
        # not a measure of generalisation.
        write_dataset(home / "data" / "val.jsonl", count=32)
        for base in args.models.split(","):
            baseline = run(home, base, cpu_steps, Compute(device="cpu"), "cpu-fp32") if cpu_steps else None
            if baseline:
                results.append(baseline)
            for label, compute in runs:
                result = run(home, base, args.steps, dataclasses.replace(compute), label)
                if baseline and cpu_steps == args.steps:
                    result["speedup_vs_cpu"] = result["steps_per_s"] / baseline["steps_per_s"]
                results.append(result)
    for r in results:
        peak = f"{r['peak_gpu_gib']:.2f} GiB" if r["peak_gpu_gib"] else "-"
        speedup = f" ({r['speedup_vs_cpu']:.1f}x the CPU)" if "speedup_vs_cpu" in r else ""
        print(
            f"{r['model']:>12} {r['run']:>9}: {r['steps_per_s']:.2f} steps/s{speedup}, peak {peak}, "
            f"eval loss {r['initial_eval_loss']:.4f} -> {r['eval_loss']:.4f}; {r['plan']}; {r['estimate']}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
