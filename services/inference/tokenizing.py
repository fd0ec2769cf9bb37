"""Chat prompts to token ids and back, for backends built on a Hugging Face tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from talklike.inference.types import Prompt


class ChatTokenizer:
    """Wraps a ``transformers`` tokenizer: chat template, plain text, and end-of-turn ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        eos = {tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<end_of_turn>"):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                eos.add(token_id)
        self.eos_ids = frozenset(i for i in eos if i is not None)

    def encode(self, prompt: Prompt) -> list[int]:
        if prompt.chat is not None:
            messages = [{"role": t.role, "content": t.content} for t in prompt.chat]
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return self.encode_text(prompt.raw or "")

    def encode_text(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


class TokenizerMethods:
    """``encode``/``encode_text``/``decode`` of a backend whose ChatTokenizer is set by ``start()``.

    The transformers and vLLM backends tokenize the same way (the model's own chat template),
    so they share these instead of each writing them.
    """

    tokens: ChatTokenizer | None = None

    def _tok(self) -> ChatTokenizer:
        if self.tokens is None:
            raise RuntimeError("the backend has not been started")
        return self.tokens

    def encode(self, prompt: Prompt) -> list[int]:
        return self._tok().encode(prompt)

    def encode_text(self, text: str) -> list[int]:
        return self._tok().encode_text(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok().decode(ids)
