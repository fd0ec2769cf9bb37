"""Test helper: a LoRA adapter on the tiny model (importable from any test: tests/ is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path


def make_adapter(home: Path, name: str, seed: int = 0, source: str = "tiny") -> Path:
    """A LoRA adapter on a base model (tiny by default) with random (non-zero) weights, so it answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from talklike.models import load, resolve

    resolved = resolve(source, home / "models")
    model, _tokenizer = load(resolved)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    target = home / "adapters" / name
    peft_model.save_pretrained(target)
    manifest = {"name": name, "base_model": {"source": source, "sha256": resolved.sha256}}
    (target / "adapter_manifest.json").write_text(json.dumps(manifest))
    return target
