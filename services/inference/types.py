"""The inference domain's data: requests, stream chunks, stop reasons, scores. No grpc here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class StopReason(enum.Enum):
    """Why a generation stopped (mirrors talklike.v1.StopReason)."""

    MAX_TOKENS = "max_tokens"
    EOS = "eos"
    STOP_SEQUENCE = "stop_sequence"
    CANCELLED = "cancelled"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


@dataclass(frozen=True)
class ChatTurn:
    """One chat message."""

    role: str
    content: str


@dataclass(frozen=True)
class Prompt:
    """A chat (the chat template is applied) or a raw prompt (used as is)."""

    chat: tuple[ChatTurn, ...] | None = None
    raw: str | None = None


@dataclass(frozen=True)
class Sampling:
    """Validated sampling settings; temperature 0 is greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 128
    stop_sequences: tuple[str, ...] = ()
    seed: int | None = None
    repetition_penalty: float = 1.0
    #: OpenAI / vLLM semantics: subtracted from the logits of tokens the answer holds (once / per use).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """What a backend generates: prompt token ids are computed by the core (it checks the length)."""

    request_id: str
    prompt_ids: tuple[int, ...]
    adapter: str
    sampling: Sampling
    time_limit_s: float | None = None
    #: The prompt itself, for backends that take text rather than token ids (OpenAI).
    prompt: Prompt | None = None


@dataclass
class Chunk:
    """A step of a generation: new token ids (and, once finished, the stop reason).

    Backends that only see text (OpenAI) set ``text`` and count tokens in ``token_count``.
    """

    token_ids: list[int] = field(default_factory=list)
    stop: StopReason | None = None
    text: str | None = None
    token_count: int = 0

    @property
    def tokens(self) -> int:
        return len(self.token_ids) if self.text is None else self.token_count


@dataclass(frozen=True)
class ScoreResult:
    """Log-probabilities of a text's tokens."""

    total_logprob: float
    token_count: int
    tokens: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class BaseModel:
    """The base model being served (ListModels, the HTTP face's /v1/models)."""

    source: str
    name: str
    sha256: str
    backend: str
    max_context_tokens: int
