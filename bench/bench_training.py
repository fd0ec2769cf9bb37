"""LoRA training speed: talklike's PeftTrainer loop vs a plain transformers Trainer + PEFT.

Same model (tiny), same examples and masking, same LoRA settings (r=16, alpha=32, all linear
projections), same batch size and learning rate, measured in the same run: steps per second
of each, and the ratio ours/Trainer (target ≥ 1.0×). Then the SmolLM2-135M-Instruct step time
with our loop (batch 4, ≤128 tokens; DESIGN.md measured 3.2 s/step). `--skip-smollm2` leaves
the slow part out.

Then the answer-only step against the full-logits step (the loss before it: the LM head over
every position), on the same LoRA model and the same batches of persona-length examples (batch
4, ~170 tokens), alternated: steps/s of each and the speed-up, per model (`--answer-only-models`,
default smollm2 and gemma3-270m; empty skips it).

Then, on a CPU with bf16 instructions (AMX or AVX512-BF16), the bf16 step (what `auto` picks
there: bf16 base weights and autocast, LoRA in fp32) against the fp32 step, the answer-only loss
on both, same batches, alternated (`--precision-models`, default gemma3-270m; empty skips it), and
the bf16 step with PEFT's round trip of each LoRA input through fp32 that the trainer skips.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

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


def full_logits_loss(model: Any, batch: dict[str, Any]) -> Any:
    """The baseline: logits at every position, prompt and padding masked out of the loss."""
    import torch
    from talklike.training.data import IGNORE

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE,
    )


def answer_only_vs_full(home: Path, models_dir: Path, base: str, steps: int) -> tuple[float, float, float]:
    """(full-logits steps/s, answer-only steps/s, mean tokens per example), alternated step by step."""
    import torch
    from peft import LoraConfig, get_peft_model
    from talklike.models import load, resolve
    from talklike.training.data import encode_all, read_examples
    from talklike.training.peft_trainer import collate, linear_module_names, loss_of

    model, tokenizer = load(resolve(base, models_dir))
    model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=32, target_modules=linear_module_names(model), task_type="CAUSAL_LM"),
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    encoded = encode_all(tokenizer, read_examples(home / "data" / "long.jsonl"), 256, "training")
    batches = [collate(encoded[i : i + 4], tokenizer.pad_token_id) for i in range(0, 4 * (steps + 1), 4)]
    times: dict[str, float] = {"full": 0.0, "answer": 0.0}
    for index, batch in enumerate(batches):
        for name in ("full", "answer") if index % 2 else ("answer", "full"):
            started = time.perf_counter()
            loss = full_logits_loss(model, batch) if name == "full" else loss_of(model, batch)[0]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index:  # the first batch warms both up
                times[name] += time.perf_counter() - started
    tokens = sum(len(e.input_ids) for e in encoded[: 4 * (steps + 1)]) / (4 * (steps + 1))
    return steps / times["full"], steps / times["answer"], tokens


def bf16_vs_fp32(home: Path, models_dir: Path, base: str, steps: int) -> dict[str, float]:
    """Steps/s of the trainer's CPU plans, on copies of one LoRA model, alternated step by step.

    "fp32" and "bf16" are the trainer's two plans (``Plan.forward_pass``); "bf16, PEFT casts" is
    bf16 under plain autocast, where PEFT casts each LoRA layer's input to fp32 and autocast casts
    it back (the trainer's step before it skipped those casts).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from talklike.models import resolve
    from talklike.training.compute import CPU, CPU_BF16, load_model
    from talklike.training.data import encode_all, read_examples
    from talklike.training.peft_trainer import collate, linear_module_names, loss_of

    resolved = resolve(base, models_dir)
    runs = {}
    for name, placement in (("fp32", CPU), ("bf16, PEFT casts", CPU_BF16), ("bf16", CPU_BF16)):
        model, tokenizer = load_model(resolved, placement, gradient_checkpointing=False)
        torch.manual_seed(0)
        model = get_peft_model(
            model,
            LoraConfig(r=16, lora_alpha=32, target_modules=linear_module_names(model), task_type="CAUSAL_LM"),
        )
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        runs[name] = (placement, model, optimizer)
    encoded = encode_all(tokenizer, read_examples(home / "data" / "long.jsonl"), 256, "training")
    batches = [collate(encoded[i : i + 4], tokenizer.pad_token_id) for i in range(0, 4 * (steps + 1), 4)]
    times = dict.fromkeys(runs, 0.0)
    for index, batch in enumerate(batches):
        order = list(runs)[index % len(runs) :] + list(runs)[: index % len(runs)]
        for name in order:
            placement, model, optimizer = runs[name]
            started = time.perf_counter()
            context = placement.autocast() if name == "bf16, PEFT casts" else placement.forward_pass(model)
            with context:
                loss = loss_of(model, batch)[0]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index:
                times[name] += time.perf_counter() - started
    return {name: steps / seconds for name, seconds in times.items()}


def write_long_dataset(path: Path, count: int = 64) -> None:
    """Persona answers of the demo's length (~60 words), so the prompt/answer split is realistic."""
    rng = random.Random(1)
    parts = [
        "To je neuvěřitelný, co se tady děje.",
        "Já jsem celej život makal a voni jenom kradou.",
        "Kampaň, kampaň, všude samá kampaň proti mně.",
        "My jsme měli přebytkovej rozpočet a nejlepší čísla v Evropě.",
        "Ale voni to nechtěj slyšet, protože v pražský kavárně se to nenosí.",
        "Já to řeknu jednoduše: stát se musí řídit jako firma.",
        "Lidi nemaj na nájem a Brusel nám bude říkat, co máme dělat?",
    ]
    rows = []
    for i in range(count):
        answer = " ".join(rng.sample(parts, 6)) + "\nAndrej Babiš"
        rows.append(
            {
                "messages": [
                    {
                        "role": "system",
                        "content": "Jsi satirická parodie politika: hovorová čeština a podpis.",
                    },
                    {"role": "user", "content": f"Pane předsedo, jak chcete zastavit zdražování? ({i})"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--skip-trainer", action="store_true", help="skip ours vs transformers.Trainer")
    parser.add_argument("--answer-only-models", default="smollm2,gemma3-270m")
    parser.add_argument("--answer-only-steps", type=int, default=6)
    parser.add_argument("--precision-models", default="gemma3-270m")
    parser.add_argument(
        "--models-dir", default="var/models", help="models cache (converted once; the data home's models/)"
    )
    args = parser.parse_args()
    from talklike.training.compute import cpu_multiplies_bf16

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "data").mkdir()
        write_dataset(home / "data" / "train.jsonl")
        write_long_dataset(home / "data" / "long.jsonl")
        for base in filter(None, args.answer_only_models.split(",")):
            full, answer, tokens = answer_only_vs_full(
                home, Path(args.models_dir), base, args.answer_only_steps
            )
            print(
                f"{base}, batch 4 x ~{tokens:.0f} tokens, LoRA r=16 all linear, {args.answer_only_steps} steps each "
                f"(alternated): full logits {1 / full:.2f} s/step, answer-only {1 / answer:.2f} s/step: "
                f"{answer / full:.2f}x steps/s"
            )
        for base in filter(None, args.precision_models.split(",")):
            if not cpu_multiplies_bf16():
                print(
                    f"{base}: bf16 vs fp32 skipped: this CPU has no bf16 instructions (auto trains in fp32)"
                )
                continue
            rates = bf16_vs_fp32(home, Path(args.models_dir), base, args.answer_only_steps)
            print(
                f"{base}, batch 4, answer-only loss, {args.answer_only_steps} steps each (alternated): "
                + ", ".join(f"{name} {1 / rate:.2f} s/step" for name, rate in rates.items())
                + f"; bf16 (auto on this CPU) vs fp32 {rates['bf16'] / rates['fp32']:.2f}x steps/s, "
                f"without PEFT's input casts vs with {rates['bf16'] / rates['bf16, PEFT casts']:.2f}x"
            )
        if args.skip_trainer:
            return
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
