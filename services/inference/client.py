"""A small typed client of the inference service, for talklike's CLI, pipeline and other Python tools."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from talklike.common.client import connect
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
    repetition_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> pb.SamplingParams:
    params = pb.SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
    )
    if seed is not None:
        params.seed = seed
    return params


class InferenceClient:
    """Sync client over one channel (address from TALKLIKE_INFERENCE_ADDRESS, token and TLS from the environment)."""

    def __init__(self, channel: grpc.Channel | None = None) -> None:
        self.channel = channel or connect("inference")
        self.stub = pb_grpc.InferenceServiceStub(self.channel)

    def generate(
        self,
        messages: list[dict[str, str]],
        adapter: str = "",
        params: pb.SamplingParams | None = None,
        timeout_s: float = 600,
    ) -> Answer:
        reply = self.stub.Generate(
            pb.GenerateRequest(chat=conversation(messages), adapter=adapter, sampling=params or sampling()),
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
    ) -> Iterator[pb.GenerateStreamResponse]:
        yield from self.stub.GenerateStream(
            pb.GenerateStreamRequest(
                chat=conversation(messages), adapter=adapter, sampling=params or sampling()
            ),
            timeout=timeout_s,
        )

    def score(self, messages: list[dict[str, str]], text: str, adapter: str = "") -> pb.ScoreResponse:
        """Log-probability of ``text`` as the answer to ``messages``."""
        return self.stub.Score(
            pb.ScoreRequest(chat=conversation(messages), text=text, adapter=adapter), timeout=600
        )

    def models(self) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=30)

    def load_adapter(self, name: str, path: str = "") -> pb.AdapterInfo:
        return self.stub.LoadAdapter(pb.LoadAdapterRequest(name=name, path=path), timeout=300).adapter

    def close(self) -> None:
        self.channel.close()
