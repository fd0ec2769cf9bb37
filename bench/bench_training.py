"""LoRA training speed: talklike's PeftTrainer loop vs a plain transformers Trainer + PEFT.

Same model (tiny), same examples and masking, same LoRA settings (r=16, alpha=32, all linear
projections), same batch size and learning rate, measured in the same run: steps per second
of each, and the ratio ours/Trainer (target ≥ 1.0×). Then the SmolLM2-135M-Instruct step time
with our loop (batch 4, ≤128 tokens; DESIGN.md measured 3.2 s/step). `--skip-smollm2` leaves
the slow part out.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

STEPS = 60


def write_dataset(path: Path, count: int = 240) -> None:
    rng = random.Random(0)
    topics = ["inflace", "důchody", "daně", "energie", "Brusel", "dálnice"]
    rows = []
    for i in range(count):
        topic = topics[i % len(topics)]
        answer = f"{rng.choice(['To je neuvěřitelný!', 'Kampaň!', 'Makal jsem.'])} {topic} je kampaň proti nám, voni kradou.\nAndrej Babiš"
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Jsi persona."},
                    {"role": "user", "content": f"Co říkáte na {topic}?"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def ours(home: Path, base: str, steps: int, max_tokens: int) -> float:
    from talklike.training.peft_trainer import PeftTrainer
    from talklike.training.spec import Hyperparameters, JobSpec

    spec = JobSpec(
        "peft",
        "data/train.jsonl",
        "",
        base,
        "bench",
        Hyperparameters(
            max_steps=steps,
            batch_size=4,
            max_sequence_tokens=max_tokens,
            lora_r=16,
            lora_alpha=32,
            learning_rate=3e-4,
            eval_interval_steps=10**6,
        ),
    )
    trainer = PeftTrainer(spec, home, home / "jobs" / f"bench-{base}", lambda *a, **k: None, lambda: False)
    model, tokenizer, train, val = trainer.prepare()
    started = time.perf_counter()
    result = trainer.run(model, tokenizer, train, val)
    assert result is not None
    return steps / (time.perf_counter() - started)


def hf_trainer(home: Path, steps: int, max_tokens: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from talklike.models import load, resolve
    from talklike.training.data import encode_all, read_examples
    from talklike.training.peft_trainer import IGNORE, linear_module_names
    from transformers import Trainer, TrainingArguments

    model, tokenizer = load(resolve("tiny", home / "models"))
    encoded = encode_all(tokenizer, read_examples(home / "data" / "train.jsonl"), max_tokens, "training")
    model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=32, target_modules=linear_module_names(model), task_type="CAUSAL_LM"),
    )

    def collate(batch: list[dict]) -> dict:  # type: ignore[type-arg]
        width = max(len(b["input_ids"]) for b in batch)
        pad = tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor(
                [b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch]
            ),
            "labels": torch.tensor([b["labels"] + [IGNORE] * (width - len(b["labels"])) for b in batch]),
            "attention_mask": torch.tensor(
                [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
            ),
        }

    data = [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded]
    args = TrainingArguments(
        output_dir=str(home / "hf"),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=3e-4,
        logging_steps=10**6,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
    started = time.perf_counter()
    trainer.train()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "data").mkdir()
        write_dataset(home / "data" / "train.jsonl")
        ours(home, "tiny", 5, 128)  # warm-up: builds tiny, loads torch
        # Interleaved, so that a change in the machine's load hits both sides alike.
        hf_rates, our_rates = [], []
        for _ in range(3):
            hf_rates.append(hf_trainer(home, STEPS, 128))
            our_rates.append(ours(home, "tiny", STEPS, 128))
        hf, mine = max(hf_rates), max(our_rates)
        print(f"tiny, {STEPS} steps, batch 4, LoRA r=16 on all linear projections, best of 3 (interleaved)")
        print(f"transformers Trainer + PEFT: {hf:.1f} steps/s ({1000 / hf:.1f} ms/step)")
        print(f"talklike PeftTrainer:        {mine:.1f} steps/s ({1000 / mine:.1f} ms/step)")
        print(f"ratio ours/Trainer: {mine / hf:.2f}x (target >= 1.0x)")
        if not args.skip_smollm2:
            rate = ours(home, "smollm2", 5, 128)
            print(
                f"SmolLM2-135M-Instruct, batch 4, <=128 tokens, r=16 all linear: {1 / rate:.2f} s/step (DESIGN.md: 3.2 s/step)"
            )


if __name__ == "__main__":
    main()
