"""The LoRA loop's pieces: answer-only loss, gradient accumulation, schedules, best checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from talklike.models import load, resolve
from talklike.training.data import encode
from talklike.training.peft_trainer import (
    BestCheckpoint,
    collate,
    learning_rate_factor,
    loss_of,
    micro_batches,
)

torch = pytest.importorskip("torch")

CHATS = [
    [
        {"role": "system", "content": "Jsi persona."},
        {"role": "user", "content": f"Co říkáte na {topic}?"},
        {"role": "assistant", "content": f"{topic.capitalize()}? To je kampaň!{' Fakt.' * i}\nAndrej Babiš"},
    ]
    for i, topic in enumerate(["inflaci", "daně", "důchody", "dálnice"])
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    model, tokenizer = load(resolve("tiny", tmp_path_factory.mktemp("models")))
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(model, config), tokenizer


def full_logits_loss(model: Any, batch: dict[str, Any]) -> Any:
    """The textbook loss: logits at every position, padding and prompt ignored."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=-100
    )


def test_answer_only_logits_give_the_full_logits_loss(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    batch = collate([encode(tokenizer, c, 128) for c in CHATS], tokenizer.pad_token_id)
    loss, tokens = loss_of(model, batch)
    assert tokens == int((batch["labels"][:, 1:] != -100).sum()) > 0
    assert float(loss) == pytest.approx(float(full_logits_loss(model, batch)), rel=1e-5)


def test_accumulated_micro_batches_give_the_big_batch_gradient(tiny: tuple[Any, Any]) -> None:
    """Micro-batches weighted by their answer tokens sum to the gradient of the whole batch."""
    model, tokenizer = tiny
    encoded = [encode(tokenizer, c, 128) for c in CHATS]
    params = [p for p in model.parameters() if p.requires_grad]

    def gradients(parts: list[list[int]]) -> list[Any]:
        model.zero_grad()
        batches = [collate([encoded[i] for i in part], tokenizer.pad_token_id) for part in parts]
        total = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for batch in batches:
            loss, n = loss_of(model, batch)
            (loss * (n / total)).backward()
        return [p.grad.detach().clone() for p in params]

    whole = gradients([[0, 1, 2, 3]])
    accumulated = gradients(micro_batches([0, 1, 2, 3], 2))
    assert micro_batches([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    for a, b in zip(whole, accumulated, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # A plain mean of the micro-batch losses would not be the same when their token counts differ.
    model.zero_grad()
    for part in micro_batches([0, 1, 2, 3], 2):
        (loss_of(model, collate([encoded[i] for i in part], tokenizer.pad_token_id))[0] / 2).backward()
    assert not all(torch.allclose(a, p.grad, rtol=1e-4) for a, p in zip(whole, params, strict=True))


def test_learning_rate_schedules_by_hand() -> None:
    linear = learning_rate_factor("linear", warmup=2, total=10)
    assert [linear(s) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    cosine = learning_rate_factor("cosine", warmup=2, total=10)
    assert cosine(2) == 1.0 and cosine(6) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    assert cosine(4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    constant = learning_rate_factor("constant", warmup=4, total=10)
    assert [constant(s) for s in (0, 3, 9)] == [0.25, 1.0, 1.0]


def test_best_checkpoint_counts_passes_without_improvement() -> None:
    best = BestCheckpoint()
    assert best.observe(10, 2.0)
    assert best.observe(20, 1.5)
    assert not best.observe(30, 1.6)
    assert not best.observe(40, 1.5)  # equal is not better
    assert (best.step, best.eval_loss, best.passes_without_improvement) == (20, 1.5, 2)
    assert best.observe(50, 1.4) and best.passes_without_improvement == 0


def test_a_generated_dataset_declares_its_language_beside_it_or_one_folder_up(tmp_path: Path) -> None:
    from talklike.training.data import dataset_language

    dataset = tmp_path / "datasets" / "babis"
    (dataset / "moderated").mkdir(parents=True)
    (dataset / "stats.json").write_text(json.dumps({"pack": {"name": "babis", "language": "cs"}}))
    assert dataset_language(dataset / "train.jsonl") == "cs"
    assert dataset_language(dataset / "moderated" / "moderated.jsonl") == "cs"
    assert dataset_language(tmp_path / "elsewhere.jsonl") == ""
