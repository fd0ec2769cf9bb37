"""The ``tiny`` model: a small random Llama with a tokenizer trained on talklike's own text.

Tests need a real model that trains in milliseconds and is **the same everywhere**: the
training service and the inference service (separate processes, maybe separate machines)
must share exactly the same base, so an adapter trained on one loads on the other. So the
tokenizer is trained on fixed text shipped with talklike (``corpus.txt`` plus the built-in
persona packs), the weights come from a fixed seed, and the files are built once into the
models cache under a name that carries the hash of everything that went into them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Bump when the architecture or the build changes, so old caches are not reused (it is hashed into the name).
TINY_VERSION = 2
SEED = 1234
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

#: ChatML, with generation markers so the assistant tokens can be masked exactly.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

PACKAGE_DIR = Path(__file__).resolve().parent
PACKS_DIR = PACKAGE_DIR.parent / "generation" / "packs"


def corpus() -> list[str]:
    """The tokenizer's training text: the shipped corpus, then the built-in packs' files in name order."""
    texts = [(PACKAGE_DIR / "corpus.txt").read_text(encoding="utf-8")]
    if PACKS_DIR.is_dir():
        for path in sorted(PACKS_DIR.rglob("*.yaml")):
            texts.append(path.read_text(encoding="utf-8"))
    return texts


def fingerprint() -> str:
    """Hash of everything the tiny model is built from; names its cache directory."""
    digest = hashlib.sha256(f"tiny-v{TINY_VERSION}-seed{SEED}-vocab{VOCAB_SIZE}".encode())
    for text in corpus():
        digest.update(text.encode("utf-8"))
    return digest.hexdigest()[:12]


def build(target: Path) -> None:
    """Write the tiny model and tokenizer into ``target`` (an empty directory)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(target)

    config = LlamaConfig(
        vocab_size=len(fast),
        # head_dim 64: vLLM's CPU attention kernels support no smaller head size.
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(target, safe_serialization=True)
