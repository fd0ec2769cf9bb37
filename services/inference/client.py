"""A small typed client of the inference service, for talklike's CLI, pipeline and other Python tools.

Failures come back as ``talklike.common.errors`` exceptions (``client.remote_errors``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from talklike.common import client
from talklike.inference.types import BaseModel
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

ROLES = {
    "system": common_pb2.CHAT_ROLE_SYSTEM,
    "user": common_pb2.CHAT_ROLE_USER,
    "assistant": common_pb2.CHAT_ROLE_ASSISTANT,
}


@dataclass(frozen=True)
class Answer:
    """A generated answer."""

    text: str
    stop_reason: str
    prompt_tokens: int
    completion_tokens: int


def conversation(messages: list[dict[str, str]]) -> pb.Conversation:
    """``[{"role": ..., "content": ...}]`` → the proto chat."""
    return pb.Conversation(
        messages=[common_pb2.ChatMessage(role=ROLES[m["role"]], content=m["content"]) for m in messages]
    )


def sampling(
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int | None = None,
    top_p: float = 0.0,
    top_k: int = 0,
    repetition_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> pb.SamplingParams:
    params = pb.SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
    )
    if seed is not None:
        params.seed = seed
    return params


@dataclass(frozen=True)
class Adapter:
    """A loaded LoRA adapter and its manifest (base model, hashes, metrics, job id)."""

    name: str
    path: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Models:
    """What ListModels reports: the base model and the adapters loaded now."""

    base: BaseModel
    adapters: tuple[Adapter, ...]


@dataclass(frozen=True)
class Score:
    """Log-probability of a text as the answer to a chat."""

    total_logprob: float
    token_count: int
    perplexity: float


def _adapter(info: pb.AdapterInfo) -> Adapter:
    return Adapter(info.name, info.path, json.loads(info.manifest_json or "{}"))


class InferenceClient(client.ServiceClient):
    """Sync client of the inference service; failures are raised as ``talklike.common.errors`` exceptions."""

    service = "inference"

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        super().__init__(channel)
        self.stub = pb_grpc.InferenceServiceStub(self.channel)

    def generate(
        self,
        messages: list[dict[str, str]],
        adapter: str = "",
        params: pb.SamplingParams | None = None,
        timeout_s: float = 600,
    ) -> Answer:
        with client.remote_errors():
            reply = self.stub.Generate(
                pb.GenerateRequest(
                    chat=conversation(messages), adapter=adapter, sampling=params or sampling()
                ),
                timeout=timeout_s,
            )
        return Answer(
            reply.text,
            pb.StopReason.Name(reply.stop_reason),
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens,
        )

    def stream(
        self,
        messages: list[dict[str, str]],
        adapter: str = "",
        params: pb.SamplingParams | None = None,
        timeout_s: float = 600,
    ) -> Iterator[str]:
        """The answer's text, piece by piece as it is generated."""
        replies = self.stub.GenerateStream(
            pb.GenerateStreamRequest(
                chat=conversation(messages), adapter=adapter, sampling=params or sampling()
            ),
            timeout=timeout_s,
        )
        for reply in client.each(replies):
            if reply.text_delta:
                yield reply.text_delta

    def score(self, messages: list[dict[str, str]], text: str, adapter: str = "") -> Score:
        """Log-probability of ``text`` as the answer to ``messages``."""
        with client.remote_errors():
            reply = self.stub.Score(
                pb.ScoreRequest(chat=conversation(messages), text=text, adapter=adapter), timeout=600
            )
        return Score(reply.total_logprob, int(reply.token_count), reply.perplexity)

    def models(self) -> Models:
        with client.remote_errors():
            reply = self.stub.ListModels(pb.ListModelsRequest(), timeout=30)
        base = reply.base
        return Models(
            BaseModel(base.source, base.name, base.sha256, base.backend, int(base.max_context_tokens)),
            tuple(_adapter(a) for a in reply.adapters),
        )

    def load_adapter(self, name: str, path: str = "") -> Adapter:
        with client.remote_errors():
            return _adapter(
                self.stub.LoadAdapter(pb.LoadAdapterRequest(name=name, path=path), timeout=300).adapter
            )
