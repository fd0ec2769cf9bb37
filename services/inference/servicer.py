"""talklike.v1.InferenceService: proto ↔ domain over ``InferenceCore``; errors map in the runtime."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
from talklike.common.service import ServiceBinding
from talklike.inference.adapters import LoadedAdapter
from talklike.inference.core import InferenceCore, StreamEvent, validate_prompt
from talklike.inference.settings import InferenceSettings
from talklike.inference.types import ChatTurn, Prompt, Sampling, StopReason
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

#: Largest request, as the HTTP face's body limit (aiohttp's 1 MiB): room for a chat of many turns
#: of up to ``limits.MAX_TEXT_CHARS`` characters in all (the core refuses a longer prompt).
MAX_REQUEST_BYTES = 1 << 20

ROLE_NAMES = {
    common_pb2.CHAT_ROLE_SYSTEM: "system",
    common_pb2.CHAT_ROLE_USER: "user",
    common_pb2.CHAT_ROLE_ASSISTANT: "assistant",
}
STOP_REASONS = {
    StopReason.MAX_TOKENS: pb.STOP_REASON_MAX_TOKENS,
    StopReason.EOS: pb.STOP_REASON_EOS,
    StopReason.STOP_SEQUENCE: pb.STOP_REASON_STOP_SEQUENCE,
    StopReason.CANCELLED: pb.STOP_REASON_CANCELLED,
    StopReason.TIME_LIMIT: pb.STOP_REASON_TIME_LIMIT,
    StopReason.ERROR: pb.STOP_REASON_ERROR,
}


def prompt_from(message: Any, oneof: str) -> Prompt | None:
    """The chat or raw prompt of a request's oneof (None when neither is set)."""
    which = message.WhichOneof(oneof)
    if which == "chat":
        return Prompt(
            chat=tuple(ChatTurn(ROLE_NAMES.get(m.role, ""), m.content) for m in message.chat.messages)
        )
    if which == "prompt":
        return Prompt(raw=message.prompt)
    return None


def sampling_from(s: pb.SamplingParams) -> Sampling:
    """Proto sampling with its documented zero-value defaults."""
    return Sampling(
        temperature=s.temperature,
        top_p=s.top_p or 1.0,
        top_k=s.top_k,
        max_new_tokens=s.max_new_tokens or 128,
        stop_sequences=tuple(s.stop_sequences),
        seed=s.seed if s.HasField("seed") else None,
        repetition_penalty=s.repetition_penalty or 1.0,
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
    )


def usage(event: StreamEvent) -> common_pb2.Usage:
    return common_pb2.Usage(
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.prompt_tokens + event.completion_tokens,
    )


def adapter_pb(record: LoadedAdapter) -> pb.AdapterInfo:
    return pb.AdapterInfo(
        name=record.name,
        path=str(record.path),
        manifest_json=json.dumps(record.manifest, ensure_ascii=False),
        loaded_at_unix_ms=int(record.loaded_at * 1000),
    )


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    """Thin: translation only."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    def _input(self, request: Any) -> Prompt:
        return prompt_from(request, "input") or Prompt()

    async def Generate(self, request: pb.GenerateRequest, context: Any) -> pb.GenerateResponse:
        text, final = await self.core.generate(
            self._input(request), request.adapter, sampling_from(request.sampling), request.time_limit_ms
        )
        return pb.GenerateResponse(
            text=text,
            stop_reason=STOP_REASONS[final.stop or StopReason.ERROR],
            usage=usage(final),
            adapter=request.adapter,
            time_to_first_token_ms=int(final.time_to_first_token_s * 1000),
            total_time_ms=int(final.total_time_s * 1000),
        )

    async def GenerateStream(
        self, request: pb.GenerateStreamRequest, context: Any
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        stream = self.core.stream(
            self._input(request), request.adapter, sampling_from(request.sampling), request.time_limit_ms
        )
        try:
            async for event in stream:
                if event.stop is None:
                    yield pb.GenerateStreamResponse(
                        text_delta=event.text, completion_tokens=event.completion_tokens
                    )
                else:
                    yield pb.GenerateStreamResponse(
                        text_delta=event.text,
                        completion_tokens=event.completion_tokens,
                        stop_reason=STOP_REASONS[event.stop],
                        usage=usage(event),
                        time_to_first_token_ms=int(event.time_to_first_token_s * 1000),
                    )
        finally:
            await stream.aclose()  # a cancelled call closes the generation at once

    async def Score(self, request: pb.ScoreRequest, context: Any) -> pb.ScoreResponse:
        result = await self.core.score(prompt_from(request, "context"), request.text, request.adapter)
        count = result.token_count
        reply = pb.ScoreResponse(
            total_logprob=result.total_logprob,
            token_count=count,
            perplexity=math.exp(-result.total_logprob / count) if count else math.inf,
        )
        if request.include_token_logprobs:
            reply.tokens.extend(pb.TokenLogprob(token=t, logprob=lp) for t, lp in result.tokens)
        return reply

    async def Tokenize(self, request: pb.TokenizeRequest, context: Any) -> pb.TokenizeResponse:
        # Validated as Generate validates its input: ``Tokenize {}`` is refused, not 0 tokens.
        ids = await self.core.encode_prompt(validate_prompt(self._input(request)))
        reply = pb.TokenizeResponse(token_count=len(ids), max_context_tokens=self.core.max_context_tokens)
        if request.include_token_ids:
            reply.token_ids.extend(ids)
        return reply

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        base = self.core.base_model()
        return pb.ListModelsResponse(
            base=pb.BaseModelInfo(
                source=base.source,
                name=base.name,
                sha256=base.sha256,
                backend=base.backend,
                max_context_tokens=base.max_context_tokens,
            ),
            adapters=[adapter_pb(a) for a in sorted(self.core.adapters.values(), key=lambda a: a.name)],
        )

    async def LoadAdapter(self, request: pb.LoadAdapterRequest, context: Any) -> pb.LoadAdapterResponse:
        return pb.LoadAdapterResponse(
            adapter=adapter_pb(await self.core.load_adapter(request.name, request.path))
        )

    async def UnloadAdapter(self, request: pb.UnloadAdapterRequest, context: Any) -> pb.UnloadAdapterResponse:
        await self.core.unload_adapter(request.name)
        return pb.UnloadAdapterResponse()


def create_service(settings: InferenceSettings) -> ServiceBinding:
    """The inference binding: the model loads in on_start (before SERVING), the HTTP face beside it."""
    from talklike.inference.backends import create_backend
    from talklike.inference.http_face import HttpFace

    core = InferenceCore(settings, create_backend(settings))
    face = HttpFace(core, settings)
    servicer = InferenceServicer(core)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_InferenceServiceServicer_to_server(servicer, server)

    async def start() -> None:
        await core.start()
        await face.start()

    async def stop() -> None:
        await face.stop()
        await core.close()

    return ServiceBinding(
        full_name=settings.full_name,
        register=register,
        on_start=[start],
        on_stop=[stop],
        collectors=core.metrics.collectors(),  # type: ignore[arg-type]
        max_request_bytes=MAX_REQUEST_BYTES,
    )
