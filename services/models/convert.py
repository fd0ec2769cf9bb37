"""GGUF → a Hugging Face safetensors directory, once, into the models cache.

transformers reads GGUF (``gguf_file=``) by dequantizing it into a torch model, but a model
loaded that way cannot be ``save_pretrained`` directly: its config still carries the GGUF
``quantization_config``. So the config is rebuilt without it, a fresh model is made from it,
the dequantized state dict is loaded into it, and that is saved (DESIGN.md, measured here).
"""

from __future__ import annotations

import copy
from pathlib import Path


def convert_gguf(
    gguf_path: Path, target: Path, chat_template: str | None = None, end_of_turn: tuple[str, ...] = ()
) -> None:
    """Write a float32 safetensors model + tokenizer converted from ``gguf_path`` into ``target``.

    A base model's GGUF carries no chat template: ``chat_template`` supplies one, and the
    tokens in ``end_of_turn`` join the generation config's EOS ids, so that every backend
    (transformers, vLLM) stops where the model ends its turn rather than at max tokens.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # The loaded model's own config, copied: reading it from the GGUF again parses the whole file's
    # metadata, the 262k-token vocabulary included (about 10 s of the conversion).
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    real_missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if real_missing or unexpected:
        raise RuntimeError(
            f"GGUF conversion of {gguf_path} lost weights: missing {real_missing[:3]}, unexpected {unexpected[:3]}"
        )
    if "lm_head.weight" in missing:
        fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    if end_of_turn:
        eos = fresh.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        ids += [tokenizer.convert_tokens_to_ids(t) for t in end_of_turn]
        fresh.generation_config.eos_token_id = list(dict.fromkeys(ids))
    fresh.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
