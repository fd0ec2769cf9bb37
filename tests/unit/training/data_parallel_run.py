"""Train a tiny LoRA job as one rank of a data-parallel run (gloo on the CPU), for test_ranks.py.

``python data_parallel_run.py HOME OUT`` trains alone; under ``torchrun --nproc-per-node=2`` each
rank trains on its share of every step. Every rank writes OUT/rank-<n>.json: the events it
reported and which of the writing methods it called.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from talklike.training.compute import Compute
from talklike.training.peft_trainer import PeftTrainer
from talklike.training.ranks import Ranks, start, stop
from talklike.training.spec import Hyperparameters, JobSpec


def main(home: Path, out: Path) -> None:
    ranks = Ranks.from_env(device="cpu")
    start(ranks)
    spec = JobSpec(
        backend="peft",
        dataset_path="datasets/persona/train.jsonl",
        validation_dataset_path="datasets/persona/val.jsonl",
        base_model="tiny",
        adapter_name=f"world-{ranks.world_size}",
        hyperparameters=Hyperparameters(
            max_steps=4, batch_size=3, gradient_accumulation_steps=2, eval_interval_steps=2, lora_r=4, seed=3
        ),
        # fp32: the two ranks' summed gradients equal one rank's to 1e-5, which bf16 rounding would not
        compute=Compute(device="cpu", precision="fp32"),
    )
    events: list[str] = []
    calls: list[str] = []
    job_dir = home / "jobs" / spec.adapter_name
    trainer = PeftTrainer(
        spec, home, job_dir, lambda kind, message, **data: events.append(kind), lambda: False, ranks=ranks
    )
    for name in ("_save_checkpoint", "_save_best"):
        original = getattr(trainer, name)

        def recorded(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        setattr(trainer, name, recorded)
    model, tokenizer, train, val = trainer.prepare()
    result = trainer.run(model, tokenizer, train, val)
    assert result is not None
    if ranks.main:
        trainer.save_adapter(result, spec.adapter_name)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank-{ranks.rank}.json").write_text(
        json.dumps({"events": events, "calls": calls, "trained_tokens": result.trained_tokens})
    )
    stop(ranks)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
