"""The running batch gives each row the tokens it gets alone, on Llama and on Gemma 3's sliding windows.

Small random models (built here, no files): rows join the batch at different steps, some with a
cached prefix, some leave early, and every row's greedy tokens must equal a solo decode of the
same prompt. The Gemma 3 model has a sliding window of 8 tokens, shorter than the rows (9-24), so a
window counted over padding instead of tokens would show.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from talklike.inference.batching import PrefillRow, RunningBatch, new_cache, prefill_inputs  # noqa: E402

STEPS = 16


#: What the two small models share: two heads, one KV head, random weights.
SMALL = {
    "vocab_size": 96,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 128,
}


def llama() -> Any:
    return transformers.LlamaConfig(num_hidden_layers=2, **SMALL), transformers.LlamaForCausalLM


def gemma3() -> Any:
    config = transformers.Gemma3TextConfig(
        num_hidden_layers=3,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        **SMALL,
    )
    return config, transformers.Gemma3ForCausalLM


def build(kind: str) -> Any:
    config, cls = {"llama": llama, "gemma3": gemma3}[kind]()
    torch.manual_seed(0)
    return cls(config).eval()


def solo(model: Any, ids: list[int], steps: int) -> list[int]:
    """Greedy tokens of one prompt alone: no padding, no batch."""
    out = model(input_ids=torch.tensor([ids]), cache=new_cache(model.config), use_cache=True)
    cache, tokens = out.cache, [int(out.logits[0, -1].argmax())]
    for _ in range(steps - 1):
        out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True)
        cache = out.cache
        tokens.append(int(out.logits[0, -1].argmax()))
    return tokens


def prefix_kv(model: Any, ids: list[int]) -> list[tuple[Any, Any]]:
    out = model(input_ids=torch.tensor([ids]), cache=new_cache(model.config), use_cache=True)
    return [(layer.keys.clone(), layer.values.clone()) for layer in out.cache.layers]


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_rows_joining_and_leaving_get_their_solo_tokens(kind: str) -> None:
    model = build(kind)
    generator = torch.Generator().manual_seed(1)
    shared = torch.randint(1, 96, (7,), generator=generator).tolist()
    prompts = {
        "a": torch.randint(1, 96, (9,), generator=generator).tolist(),
        "b": torch.randint(1, 96, (3,), generator=generator).tolist(),
        "c": shared + torch.randint(1, 96, (2,), generator=generator).tolist(),
        "d": shared + torch.randint(1, 96, (5,), generator=generator).tolist(),
        "e": torch.randint(1, 96, (6,), generator=generator).tolist(),
    }
    # Row -> (step it joins at, tokens it generates before it leaves).
    plan = {"a": (0, STEPS), "b": (0, 4), "c": (3, STEPS), "d": (3, STEPS), "e": (6, STEPS)}
    expected = {name: solo(model, ids, plan[name][1]) for name, ids in prompts.items()}
    cached = prefix_kv(model, shared)

    batch: RunningBatch | None = None
    rows: list[str] = []
    got: dict[str, list[int]] = {name: [] for name in prompts}
    with torch.inference_mode():
        for step in range(STEPS + 6):
            joiners = [name for name, (at, _) in plan.items() if at == step]
            if joiners:
                inputs = prefill_inputs(
                    [
                        PrefillRow(prompts[n], cached, len(shared)) if n in "cd" else PrefillRow(prompts[n])
                        for n in joiners
                    ],
                    model.config,
                    pad_id=0,
                )
                out = model(
                    input_ids=inputs.input_ids,
                    attention_mask=inputs.mask,
                    position_ids=inputs.position_ids,
                    cache=inputs.cache,
                    use_cache=True,
                )
                for i, name in enumerate(joiners):
                    got[name].append(int(out.logits[i, -1].argmax()))
                joined = RunningBatch(
                    out.cache, inputs.mask, torch.tensor([len(prompts[n]) for n in joiners])
                )
                if batch is None:
                    batch = joined
                else:
                    batch.extend(joined)
                rows += joiners
            if not rows:
                continue
            assert batch is not None
            mask, positions = batch.step_inputs()
            out = model(
                input_ids=torch.tensor([[got[n][-1]] for n in rows]),
                attention_mask=mask,
                position_ids=positions,
                cache=batch.cache,
                use_cache=True,
            )
            batch.stepped(mask, out.cache)
            for i, name in enumerate(rows):
                got[name].append(int(out.logits[i, -1].argmax()))
            keep = [i for i, name in enumerate(rows) if len(got[name]) < plan[name][1]]
            if len(keep) < len(rows):
                rows = [rows[i] for i in keep]
                if rows:
                    batch.keep(keep)
                else:
                    batch = None
    assert got == expected
    assert all(len(tokens) == plan[name][1] for name, tokens in got.items())
