"""Wire-level limits of every request field, checked once for every RPC before any work.

Before this, a 10 MB name was echoed into errors (past the client's 16 kB metadata limit: a
transport error instead of INVALID_ARGUMENT) and into logs, a 10 MB ``base_model`` was stored,
and ``question_mode: 99`` silently meant the default. Here every request is walked through its
descriptor, so a field added to a proto is covered without anyone remembering to:

- every **string** has a length limit: ``STRING_LIMITS`` for the long texts, else
  ``DEFAULT_MAX_CHARS`` (names, ids, paths, URLs); map keys too;
- every **enum** value must be one the enum defines (proto3 keeps unknown numbers);
- every **number** must lie in its documented range (``NUMBER_RANGES``) or be declared free
  (``UNBOUNDED_NUMBERS``, seeds); ``declared_gaps`` lists the numbers that are neither, and the
  descriptor-driven tests fail on any.

The domain cores still check meaning (a pack that exists, a name's alphabet, a path inside the
data home); this module only keeps hostile sizes and values out of them. Errors name the
request's field path (``chat.messages[2].content``) and never quote the value itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from talklike.common.errors import InvalidArgument

#: Names, ids, paths, URLs, model names: longer than any real one (PATH_MAX is 4,096 bytes).
DEFAULT_MAX_CHARS = 1024
#: A prompt, a chat turn, a text to score or moderate: far more than any model here reads.
MAX_TEXT_CHARS = 65_536

#: Receive limit of a service whose requests hold only names, paths and numbers (training, disk agent).
SMALL_REQUEST_BYTES = 64 * 1024

#: Strings allowed to be longer (or held shorter) than ``DEFAULT_MAX_CHARS``, by full field name.
STRING_LIMITS: dict[str, int] = {
    "talklike.v1.ChatMessage.content": MAX_TEXT_CHARS,
    "talklike.v1.GenerateRequest.prompt": MAX_TEXT_CHARS,
    "talklike.v1.GenerateStreamRequest.prompt": MAX_TEXT_CHARS,
    "talklike.v1.ScoreRequest.prompt": MAX_TEXT_CHARS,
    "talklike.v1.ScoreRequest.text": MAX_TEXT_CHARS,
    "talklike.v1.TokenizeRequest.prompt": MAX_TEXT_CHARS,
    "talklike.v1.ModerateRequest.texts": MAX_TEXT_CHARS,
    "talklike.v1.DraftPackRequest.description": 16_384,
    "talklike.v1.DraftPackRequest.examples": MAX_TEXT_CHARS,
    "talklike.v1.PinRequest.holder": 256,
    "talklike.v1.SamplingParams.stop_sequences": 64,
}


@dataclass(frozen=True)
class NumberRange:
    """``low <= value <= high``; ``zero_is_default``: 0 (proto3's unset) is accepted as well."""

    low: float
    high: float
    zero_is_default: bool = False

    def admits(self, value: float) -> bool:
        if self.zero_is_default and value == 0:
            return True
        return math.isfinite(value) and self.low <= value <= self.high

    def describe(self) -> str:
        span = f"between {_number(self.low)} and {_number(self.high)}"
        return f"{span} (0 = the default)" if self.zero_is_default else span


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


_D = "talklike.v1."
#: The documented range of every number in a request (the protos' comments say the same).
NUMBER_RANGES: dict[str, NumberRange] = {
    # generation
    f"{_D}GenerateDatasetRequest.count": NumberRange(1, 1_000_000),
    f"{_D}GenerateDatasetRequest.batch_size": NumberRange(1, 1_000_000),
    f"{_D}GenerateDatasetRequest.slip_probability": NumberRange(0, 1),
    f"{_D}GenerateDatasetRequest.val_fraction": NumberRange(0, 0.5),
    f"{_D}GenerateDatasetRequest.heldout_count": NumberRange(0, 100_000),
    f"{_D}LlmOptions.temperature": NumberRange(0, 2),
    f"{_D}LlmOptions.batch_size": NumberRange(1, 100, zero_is_default=True),
    f"{_D}ValidateDatasetRequest.max_problems": NumberRange(1, 1_000_000, zero_is_default=True),
    f"{_D}EstimateCostRequest.epochs": NumberRange(1, 50, zero_is_default=True),
    f"{_D}DraftPackRequest.template_count": NumberRange(10, 5_000),
    f"{_D}DraftPackRequest.style_count": NumberRange(2, 8, zero_is_default=True),
    f"{_D}DraftPackRequest.malformed_retries": NumberRange(0, 10),
    f"{_D}SamplePackRequest.count": NumberRange(1, 100),
    # moderation
    f"{_D}ModerationPolicy.flagged_share_limit": NumberRange(0, 1),
    f"{_D}ModerateDatasetRequest.worst_example_count": NumberRange(0, 1_000),
    # training
    f"{_D}Hyperparameters.epochs": NumberRange(1, 100, zero_is_default=True),
    f"{_D}Hyperparameters.max_steps": NumberRange(0, 1_000_000),
    f"{_D}Hyperparameters.learning_rate": NumberRange(0, 1),
    f"{_D}Hyperparameters.batch_size": NumberRange(1, 256, zero_is_default=True),
    f"{_D}Hyperparameters.max_sequence_tokens": NumberRange(16, 8192, zero_is_default=True),
    f"{_D}Hyperparameters.lora_r": NumberRange(1, 256, zero_is_default=True),
    f"{_D}Hyperparameters.lora_alpha": NumberRange(0, 65_536),
    f"{_D}Hyperparameters.lora_dropout": NumberRange(0, 0.9),
    f"{_D}Hyperparameters.eval_interval_steps": NumberRange(1, 1_000_000, zero_is_default=True),
    f"{_D}Hyperparameters.gradient_accumulation_steps": NumberRange(1, 256, zero_is_default=True),
    f"{_D}Hyperparameters.warmup_steps": NumberRange(0, 1_000_000),
    f"{_D}Hyperparameters.early_stopping_patience": NumberRange(0, 1_000),
    f"{_D}Hyperparameters.learning_rate_multiplier": NumberRange(0, 10),
    f"{_D}ListJobsRequest.limit": NumberRange(1, 1_000, zero_is_default=True),
    f"{_D}ComputeOptions.gpu_count": NumberRange(1, 16, zero_is_default=True),
    # inference
    f"{_D}SamplingParams.temperature": NumberRange(0, 2),
    f"{_D}SamplingParams.top_p": NumberRange(0, 1),
    f"{_D}SamplingParams.top_k": NumberRange(0, 1_000_000),
    f"{_D}SamplingParams.max_new_tokens": NumberRange(1, 4096, zero_is_default=True),
    f"{_D}SamplingParams.repetition_penalty": NumberRange(1, 2, zero_is_default=True),
    f"{_D}SamplingParams.presence_penalty": NumberRange(-2, 2),
    f"{_D}SamplingParams.frequency_penalty": NumberRange(-2, 2),
    f"{_D}GenerateRequest.time_limit_ms": NumberRange(0, 3_600_000),
    f"{_D}GenerateStreamRequest.time_limit_ms": NumberRange(0, 3_600_000),
    # disk agent
    f"{_D}EnsureFreeRequest.required_bytes": NumberRange(0, 2**50),
    f"{_D}PinRequest.ttl_seconds": NumberRange(1, 604_800),
    f"{_D}WatchUsageRequest.interval_ms": NumberRange(100, 3_600_000, zero_is_default=True),
}

#: Numbers any value of which is meaningful.
UNBOUNDED_NUMBERS: frozenset[str] = frozenset(
    {
        f"{_D}GenerateDatasetRequest.seed",
        f"{_D}SamplePackRequest.seed",
        f"{_D}Hyperparameters.seed",
        f"{_D}SamplingParams.seed",
    }
)

_NUMBER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_DOUBLE,
        FieldDescriptor.TYPE_FLOAT,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def is_number(field: FieldDescriptor) -> bool:
    """True for the integer and floating-point field types."""
    return field.type in _NUMBER_TYPES


def message_of(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def is_map(field: FieldDescriptor) -> bool:
    """True for a ``map<K, V>`` field (a repeated entry message on the wire)."""
    return field.type == FieldDescriptor.TYPE_MESSAGE and bool(message_of(field).GetOptions().map_entry)


def max_chars(field: FieldDescriptor) -> int:
    """The length limit of a string field (of each element, when repeated)."""
    return STRING_LIMITS.get(field.full_name, DEFAULT_MAX_CHARS)


def check_request(message: Message) -> None:
    """Raise InvalidArgument naming the first field over its limit, out of range, or of an unknown enum value."""
    _check(message, "")


def _check(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if is_map(field):
            _check_map(field, value, path)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _check_value(field, item, f"{path}[{index}]")
        else:
            _check_value(field, value, path)


def _check_map(field: FieldDescriptor, value: Any, path: str) -> None:
    key_field = message_of(field).fields_by_name["key"]
    value_field = message_of(field).fields_by_name["value"]
    for key in value:
        if isinstance(key, str) and len(key) > max_chars(key_field):
            raise InvalidArgument(path, f"a key is {len(key):,} characters; at most {max_chars(key_field):,}")
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _check(value[key], f'{path}["{key}"].')


def _check_value(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _check(value, f"{path}.")
    elif field.type == FieldDescriptor.TYPE_STRING:
        limit = max_chars(field)
        if len(value) > limit:
            raise InvalidArgument(path, f"is {len(value):,} characters; at most {limit:,}")
    elif field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        if field.enum_type.values_by_number.get(value) is None:
            known = ", ".join(v.name for v in field.enum_type.values)
            raise InvalidArgument(path, f"unknown value {value}; one of {known}")
    elif is_number(field):
        allowed = NUMBER_RANGES.get(field.full_name)
        if allowed is not None and not allowed.admits(value):
            raise InvalidArgument(path, f"must be {allowed.describe()}, got {value}")


def request_fields(descriptor: Descriptor) -> Iterator[tuple[str, FieldDescriptor]]:
    """Every field reachable from a request message, with its path (``[0]`` for repeated), maps' entries included."""
    yield from _fields(descriptor, "", frozenset({descriptor.full_name}))


def _fields(
    descriptor: Descriptor, prefix: str, seen: frozenset[str]
) -> Iterator[tuple[str, FieldDescriptor]]:
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        if is_map(field):
            yield path, field
            entry_value = message_of(field).fields_by_name["value"]
            if entry_value.type == FieldDescriptor.TYPE_MESSAGE:
                yield from _fields(message_of(entry_value), f'{path}["k"].', seen)
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            nested = message_of(field)
            if nested.full_name not in seen:
                yield from _fields(
                    nested, f"{path}[0]." if field.is_repeated else f"{path}.", seen | {nested.full_name}
                )
            continue
        yield (f"{path}[0]" if field.is_repeated else path), field


def declared_gaps(services: Iterable[ServiceDescriptor]) -> list[str]:
    """Numbers in the services' requests with neither a declared range nor a place among the unbounded ones."""
    gaps = set()
    for service in services:
        for method in service.methods:
            for _path, field in request_fields(method.input_type):
                name = field.full_name
                if is_number(field) and name not in NUMBER_RANGES and name not in UNBOUNDED_NUMBERS:
                    gaps.add(name)
    return sorted(gaps)
