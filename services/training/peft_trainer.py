"""Local LoRA training with transformers + PEFT: a lean loop with checkpoints it can resume from.

A hand-written loop rather than ``transformers.Trainer``: it does only what a LoRA job needs
(dynamic padding, loss on answer tokens, periodic evaluation, atomic checkpoints with the
optimizer and the data order), which is what makes it at least as fast as Trainer here and
lets a restarted service continue exactly where the last checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talklike import __version__
from talklike.training.compute import (
    CPU,
    DeviceProperties,
    Plan,
    Workload,
    check_fits,
    gib,
    load_model,
    meta_skeleton,
    plan,
    probe_cuda,
    shape_of,
)
from talklike.training.data import IGNORE, Encoded, JobError, encode_all, file_sha256, read_examples
from talklike.training.ranks import Ranks
from talklike.training.spec import JobSpec

Emit = Callable[..., None]
#: Validation runs without gradients, so it can take bigger batches than training: fewer, fuller
#: forward passes (the validation examples are sorted by length, so little of it is padding).
EVAL_BATCH_SIZE = 16
#: Validation examples used (the first of the file): enough tokens to rank checkpoints.
MAX_EVAL_EXAMPLES = 64


@dataclass
class TrainingResult:
    """What the manifest records about a finished run."""

    steps: int
    train_loss: float
    eval_loss: float | None
    initial_eval_loss: float | None
    trained_tokens: int
    wall_time_s: float
    #: The step whose adapter is kept (the lowest validation loss; the last step without validation).
    best_step: int = 0
    #: The step at which early stopping ended the run (0 = it ran every step).
    stopped_early_at: int = 0


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of the Linear layers LoRA can adapt (the output head excluded)."""
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    return sorted(names - {"lm_head"})


def check_target_modules(model: Any, requested: tuple[str, ...]) -> list[str]:
    """The modules to adapt: all linear projections by default, or the requested ones if the model has them."""
    available = linear_module_names(model)
    unknown = [m for m in requested if m not in available]
    if unknown:
        raise JobError(
            "unknown_target_module",
            f"the model has no module named {', '.join(unknown)}; its linear modules are: {', '.join(available)}",
        )
    return list(requested) or available


def step_plan(count: int, batch_size: int, epochs: int, max_steps: int, seed: int) -> list[list[int]]:
    """Every step's example indices, fixed by the seed, so a resumed job sees the same order."""
    rng = random.Random(seed)
    plan: list[list[int]] = []
    epoch = 0
    while True:
        order = list(range(count))
        rng.shuffle(order)
        plan.extend(order[i : i + batch_size] for i in range(0, count, batch_size))
        epoch += 1
        if (max_steps and len(plan) >= max_steps) or (not max_steps and epoch >= epochs):
            break
    return plan[:max_steps] if max_steps else plan


def micro_batches(step: list[int], batch_size: int) -> list[list[int]]:
    """A step's examples in micro-batches of ``batch_size`` (gradient accumulation)."""
    return [step[i : i + batch_size] for i in range(0, len(step), batch_size)]


def learning_rate_factor(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at each step: linear warmup, then the schedule."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return factor


def answer_positions(example: Encoded) -> int:
    """Positions whose next token is an answer token: what the loss averages over."""
    return sum(1 for label in example.labels[1:] if label != IGNORE)


def collate(examples: list[Encoded], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
        mask[row, : len(e.input_ids)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def loss_of(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Mean cross-entropy over answer tokens, and how many there were.

    The LM head runs only at the positions that predict an answer token. On a 262k-word
    vocabulary (Gemma 3) the head over every position is most of a CPU step (4 × 170 tokens:
    8.5 s with full logits, 4.7 s at answer positions only); the loss is the same.
    """
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep])
    softcap = getattr(causal.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep])
    return loss, int(keep.sum())


def evaluate(
    model: Any, examples: list[Encoded], pad_id: int, batch_size: int, placement: Plan = CPU
) -> float:
    """Token-weighted validation loss."""
    import torch

    total = 0.0
    tokens = 0
    model.eval()
    with torch.no_grad(), placement.forward_pass(model):
        for i in range(0, len(examples), batch_size):
            loss, n = loss_of(model, placement.move(collate(examples[i : i + batch_size], pad_id)))
            total += float(loss) * n
            tokens += n
    model.train()
    return total / max(tokens, 1)


@dataclass
class BestCheckpoint:
    """The validation pass with the lowest loss so far, and how many passes since it (early stopping)."""

    step: int = 0
    eval_loss: float = math.inf
    passes_without_improvement: int = 0

    def observe(self, step: int, eval_loss: float) -> bool:
        """Record a validation pass; True when it is the best so far."""
        if eval_loss < self.eval_loss:
            self.step, self.eval_loss, self.passes_without_improvement = step, eval_loss, 0
            return True
        self.passes_without_improvement += 1
        return False


class PeftTrainer:
    """Runs one job's training from scratch or from its checkpoint."""

    def __init__(
        self,
        spec: JobSpec,
        home: Path,
        job_dir: Path,
        emit: Emit,
        should_stop: Callable[[], bool],
        *,
        probe: Callable[[], DeviceProperties | None] = probe_cuda,
        gpu_memory_fraction: float = 0.9,
        ranks: Ranks | None = None,
    ) -> None:
        self.spec = spec
        self.home = home
        self.job_dir = job_dir
        self.ranks = ranks or Ranks()
        self.emit: Emit = emit if self.ranks.main else (lambda *args, **data: None)  # rank 0 reports
        self.should_stop = should_stop
        self.checkpoint = job_dir / "checkpoint"
        #: The GPUs the worker sees (a test passes fake properties).
        self.probe = probe
        self.gpu_memory_fraction = gpu_memory_fraction
        self.plan = CPU

    def prepare(
        self, before_write: Callable[[int], None] | None = None
    ) -> tuple[Any, Any, list[Encoded], list[Encoded]]:
        """Load the base model and the data; everything that can be wrong with the job shows up here."""
        from talklike.models import resolve

        resolved = resolve(self.spec.base_model, self.home / "models", before_write=before_write)
        self.resolved = resolved
        compute = self.spec.compute
        props = self.probe() if compute.device != "cpu" else None
        self.plan = plan(compute, props, self.ranks.local_rank)
        self.emit("log", self.plan.describe(props))
        if props is not None and self.plan.device == "cuda":
            self._check_memory(resolved.path, props)
        model, tokenizer = load_model(resolved, self.plan, compute.gradient_checkpointing)
        self.tokenizer = tokenizer
        hp = self.spec.hyperparameters
        self.targets = check_target_modules(model, hp.lora_target_modules)
        train = encode_all(
            tokenizer, read_examples(self.home / self.spec.dataset_path), hp.max_sequence_tokens, "training"
        )
        val: list[Encoded] = []
        if self.spec.validation_dataset_path:
            val = encode_all(
                tokenizer,
                read_examples(self.home / self.spec.validation_dataset_path),
                hp.max_sequence_tokens,
                "validation",
            )[:MAX_EVAL_EXAMPLES]
            val.sort(key=lambda e: len(e.input_ids))
        return model, tokenizer, train, val

    def _check_memory(self, path: Path, props: DeviceProperties) -> None:
        """Refuse, before the weights load, a job whose estimate exceeds the GPU's free memory."""
        hp = self.spec.hyperparameters
        skeleton = meta_skeleton(path)
        shape = shape_of(skeleton, check_target_modules(skeleton, hp.lora_target_modules), hp.lora_r)
        work = Workload(
            batch_size=hp.batch_size,
            sequence_tokens=hp.max_sequence_tokens,
            precision=self.plan.precision,
            quantization=self.plan.quantization,
            gradient_checkpointing=self.spec.compute.gradient_checkpointing,
        )
        estimate = check_fits(shape, work, hp.gradient_accumulation_steps, props, self.gpu_memory_fraction)
        self.emit(
            "log",
            f"GPU memory estimate {gib(estimate.total)} ({estimate.describe()}) of {gib(props.free_bytes)} "
            f"free on {props.name}",
        )

    def run(
        self, model: Any, tokenizer: Any, train: list[Encoded], val: list[Encoded]
    ) -> TrainingResult | None:
        """Train; returns None when stopped by a cancel request."""
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        hp = self.spec.hyperparameters
        torch.manual_seed(hp.seed)
        accumulation = hp.gradient_accumulation_steps
        plan = step_plan(len(train), hp.batch_size * accumulation, hp.epochs, hp.max_steps, hp.seed)
        total_steps = len(plan)
        start_step = 0
        initial_eval: float | None = None
        best = BestCheckpoint()
        # Tokens and seconds of the runs before a restart: the manifest describes the whole job.
        prior_tokens, prior_wall_s = 0, 0.0
        if (self.checkpoint / "state.json").exists():
            state = json.loads((self.checkpoint / "state.json").read_text())
            model = PeftModel.from_pretrained(model, str(self.checkpoint / "adapter"), is_trainable=True)
            start_step, initial_eval = int(state["step"]), state.get("initial_eval_loss")
            prior_tokens = int(state.get("trained_tokens", 0))
            prior_wall_s = float(state.get("wall_time_s", 0.0))
            best = BestCheckpoint(**state.get("best", {}))
            self.emit(
                "log",
                f"resumed from the checkpoint at step {start_step}",
                step=start_step,
                total_steps=total_steps,
            )
        else:
            config = LoraConfig(
                r=hp.lora_r,
                lora_alpha=hp.lora_alpha,  # type: ignore[arg-type]  # PEFT accepts float alphas
                lora_dropout=hp.lora_dropout,
                target_modules=self.targets,
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, config)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=0.0)
        warmup = hp.warmup_steps or max(1, total_steps // 20)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, learning_rate_factor(hp.learning_rate_schedule, warmup, total_steps)
        )
        placement = self.plan
        # fp16 only: scale the loss so small gradients survive; a disabled scaler passes everything through.
        scaler = torch.amp.GradScaler(placement.device, enabled=placement.grad_scaler)
        if start_step:
            device = placement.torch_device
            optimizer.load_state_dict(
                torch.load(self.checkpoint / "optimizer.pt", weights_only=True, map_location=device)
            )
            scheduler.load_state_dict(torch.load(self.checkpoint / "scheduler.pt", weights_only=True))
            if (self.checkpoint / "scaler.pt").exists():
                scaler.load_state_dict(torch.load(self.checkpoint / "scaler.pt", weights_only=True))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if val and initial_eval is None and self.ranks.main:
            initial_eval = evaluate(model, val, pad, max(hp.batch_size, EVAL_BATCH_SIZE), placement)
            self.emit(
                "eval",
                f"before training: eval loss {initial_eval:.4f}",
                step=0,
                total_steps=total_steps,
                eval_loss=initial_eval,
                eval_perplexity=math.exp(min(initial_eval, 50)),
            )
        started = time.perf_counter()
        trained_tokens = 0
        loss_value = 0.0
        eval_loss: float | None = None
        done = start_step
        stopped_early_at = 0
        for step in range(start_step, total_steps):
            if self.ranks.agree(self.ranks.main and self.should_stop()):
                return None
            # This rank's share of the step (all of it on one process), in micro-batches.
            batches = [
                collate([train[i] for i in part], pad)
                for part in micro_batches(self.ranks.shard(plan[step]), hp.batch_size)
            ]
            # Each micro-batch's mean loss weighted by its share of the whole step's answer tokens:
            # the gradients summed over micro-batches and ranks are the gradient of the step's
            # token-mean loss.
            step_tokens = sum(answer_positions(train[i]) for i in plan[step])
            loss_value = 0.0
            step_trained = 0
            for batch in batches:
                step_trained += int(batch["attention_mask"].sum())
                with placement.forward_pass(model):
                    loss, answer_tokens = loss_of(model, placement.move(batch))
                scaler.scale(loss * (answer_tokens / step_tokens)).backward()
                loss_value += float(loss.detach()) * answer_tokens / step_tokens
            loss_value, summed = self.ranks.sum_gradients(params, loss_value, step_trained)
            trained_tokens += int(summed)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            elapsed = time.perf_counter() - started
            rate = trained_tokens / elapsed if elapsed else 0.0
            eta = elapsed / (done - start_step) * (total_steps - done)
            self.emit(
                "step",
                f"step {done}/{total_steps} loss {loss_value:.4f}",
                step=done,
                total_steps=total_steps,
                train_loss=loss_value,
                tokens_per_second=rate,
                eta_seconds=eta,
            )
            if done % hp.eval_interval_steps == 0 or done == total_steps:
                early = False
                if val and self.ranks.main:
                    eval_loss = evaluate(model, val, pad, max(hp.batch_size, EVAL_BATCH_SIZE), placement)
                    improved = best.observe(done, eval_loss)
                    self.emit(
                        "eval",
                        f"step {done}: eval loss {eval_loss:.4f}"
                        + (
                            " (best so far)"
                            if improved
                            else f" (best {best.eval_loss:.4f} at step {best.step})"
                        ),
                        step=done,
                        total_steps=total_steps,
                        eval_loss=eval_loss,
                        eval_perplexity=math.exp(min(eval_loss, 50)),
                    )
                    if improved:
                        self._save_best(model)
                    early = bool(
                        hp.early_stopping_patience
                        and best.passes_without_improvement >= hp.early_stopping_patience
                    )
                    if early:
                        self.emit(
                            "log",
                            f"early stop at step {done}: {best.passes_without_improvement} validation passes "
                            f"without a lower loss than {best.eval_loss:.4f} (step {best.step})",
                            step=done,
                            total_steps=total_steps,
                        )
                if self.ranks.agree(early):
                    stopped_early_at = done
                    break
                if done < total_steps and self.ranks.main:
                    self._save_checkpoint(
                        model,
                        optimizer,
                        scheduler,
                        scaler,
                        {
                            "step": done,
                            "initial_eval_loss": initial_eval,
                            "trained_tokens": prior_tokens + trained_tokens,
                            "wall_time_s": prior_wall_s + time.perf_counter() - started,
                            "best": dataclasses.asdict(best),
                        },
                    )
                    self.emit("checkpoint", f"checkpoint at step {done}", step=done, total_steps=total_steps)
        if val and best.step and best.step != done and self.ranks.main:
            self._restore_best(model)
            self.emit(
                "log",
                f"keeping the adapter of step {best.step} (eval loss {best.eval_loss:.4f}), not step {done}",
                step=done,
                total_steps=total_steps,
            )
        self.model = model
        return TrainingResult(
            done,
            loss_value,
            best.eval_loss if best.step else eval_loss,
            initial_eval,
            prior_tokens + trained_tokens,
            prior_wall_s + time.perf_counter() - started,
            best_step=best.step or done,
            stopped_early_at=stopped_early_at,
        )

    @property
    def best_dir(self) -> Path:
        return self.job_dir / "best"

    def _save_best(self, model: Any) -> None:
        """The adapter weights of the best validation pass so far, replaced atomically."""
        staging = self.job_dir / ".best.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        shutil.rmtree(self.best_dir, ignore_errors=True)
        staging.rename(self.best_dir)

    def _restore_best(self, model: Any) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(self.best_dir / "adapter_model.safetensors"))

    def _save_checkpoint(
        self, model: Any, optimizer: Any, scheduler: Any, scaler: Any, state: dict[str, Any]
    ) -> None:
        import torch

        staging = self.job_dir / f".checkpoint-{state['step']}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging / "adapter")
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        if scaler.is_enabled():
            torch.save(scaler.state_dict(), staging / "scaler.pt")
        (staging / "state.json").write_text(json.dumps(state))
        old = self.job_dir / ".checkpoint-old"
        shutil.rmtree(old, ignore_errors=True)
        if self.checkpoint.exists():
            self.checkpoint.rename(old)
        staging.rename(self.checkpoint)
        shutil.rmtree(old, ignore_errors=True)

    def save_adapter(self, result: TrainingResult, job_id: str) -> Path:
        """Write adapters/<name>/ (weights + manifest, and merged/ on request) atomically."""
        name = self.spec.adapter_name
        store = self.home / "adapters"
        staging = store / f".{name}.tmp-{job_id}"
        shutil.rmtree(staging, ignore_errors=True)
        self.model.save_pretrained(staging)
        dataset = self.home / self.spec.dataset_path
        manifest = {
            "name": name,
            "job_id": job_id,
            "base_model": {
                "source": self.spec.base_model,
                "name": self.resolved.name,
                "sha256": self.resolved.sha256,
            },
            "dataset": {"path": self.spec.dataset_path, "sha256": file_sha256(dataset)},
            "hyperparameters": self.spec.to_dict()["hyperparameters"],
            "target_modules": self.targets,
            "metrics": {
                "steps": result.steps,
                "best_step": result.best_step,
                "stopped_early_at": result.stopped_early_at,
                "final_train_loss": result.train_loss,
                "initial_eval_loss": result.initial_eval_loss,
                "final_eval_loss": result.eval_loss,
                "final_eval_perplexity": math.exp(min(result.eval_loss, 50))
                if result.eval_loss is not None
                else None,
            },
            "trained_tokens": result.trained_tokens,
            "wall_time_s": round(result.wall_time_s, 2),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "talklike_version": __version__,
        }
        (staging / "adapter_manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        if self.spec.export_merged:
            merged = self.model.merge_and_unload()
            merged.save_pretrained(staging / "merged", safe_serialization=True)
            self.tokenizer.save_pretrained(staging / "merged")  # a complete model directory vLLM can serve
        target = store / name
        old = store / f".{name}.old-{job_id}"
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        shutil.rmtree(self.best_dir, ignore_errors=True)
        return target
