"""Every string, number, enum and path field of every RPC, driven with bad values (issue 15).

The cases are generated from the protos' descriptors: for each service, each method, each field
of its request (nested messages, repeated fields and maps included) the test builds
an over-long string, an unknown enum value, numbers outside the documented range (negative,
one past the end, the type's largest, NaN), and for path fields traversal and wrong kinds; each
must come back as INVALID_ARGUMENT naming the field in ``talklike-field`` (PERMISSION_DENIED
naming it, where the contract says so) — never UNKNOWN, INTERNAL or a transport error. A field
added to a proto is covered without editing this file; a number without a declared range, or a
path-like field nobody classified, fails ``test_every_field_is_classified``.

Real servers on loopback ports, one per service, real gRPC.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from talklike.common.error_mapping import FIELD_METADATA_KEY
from talklike.common.errors import QUOTE_CHARS
from talklike.common.limits import (
    NUMBER_RANGES,
    UNBOUNDED_NUMBERS,
    declared_gaps,
    is_map,
    is_number,
    max_chars,
    request_fields,
)
from talklike.common.service import ServiceBinding
from talklike.common.settings import ServiceSettings
from talklike.common.testing import running_service
from talklike.v1 import disk_agent_pb2, generation_pb2, inference_pb2, moderation_pb2, training_pb2

SERVICES: dict[str, ServiceDescriptor] = {
    "generation": generation_pb2.DESCRIPTOR.services_by_name["GenerationService"],
    "moderation": moderation_pb2.DESCRIPTOR.services_by_name["ModerationService"],
    "training": training_pb2.DESCRIPTOR.services_by_name["TrainingService"],
    "inference": inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
    "disk-agent": disk_agent_pb2.DESCRIPTOR.services_by_name["DiskAgentService"],
}

#: Path fields and what they name: a file to read, a directory to write or read, a model source,
#: or a managed volume whose refusal the contract makes PERMISSION_DENIED.
PATH_FIELDS: dict[str, str] = {
    "talklike.v1.GenerateDatasetRequest.out": "out-dir",
    "talklike.v1.ValidateDatasetRequest.path": "file",
    "talklike.v1.ValidateDatasetRequest.out": "out-dir",
    "talklike.v1.EstimateCostRequest.path": "file",
    "talklike.v1.ModerateDatasetRequest.path": "file",
    "talklike.v1.ModerateDatasetRequest.out": "out-dir",
    "talklike.v1.EvaluateBackendRequest.set_path": "file",
    "talklike.v1.CreateJobRequest.dataset_path": "file",
    "talklike.v1.CreateJobRequest.validation_dataset_path": "file",
    "talklike.v1.CreateJobRequest.base_model": "model",
    "talklike.v1.LoadAdapterRequest.path": "dir",
    "talklike.v1.EnsureFreeRequest.volume": "volume",
    "talklike.v1.MigrateRequest.target_path": "volume",
}
#: A string field whose name looks like this must be in PATH_FIELDS (or in NOT_PATHS).
PATH_LIKE = re.compile(r"(^|_)(path|out|dir|directory|volume|file)$|base_model")
NOT_PATHS = {"talklike.v1.ValidateDatasetRequest.file_name", "talklike.v1.ModerateDatasetRequest.file_name"}

TRAVERSALS = ("../../../../../../etc", "/etc", "datasets/../../../etc/passwd")

#: Just enough of a request that the path check is the one reached (other fields valid).
BASELINES: dict[str, dict[str, Any]] = {
    "GenerateDataset": {"pack": "puffington", "count": 10},
    "EstimateCost": {"model": "gpt-4o-mini-2024-07-18"},
    "ValidateDataset": {"path": "datasets/probe/train.jsonl"},
    "ModerateDataset": {"path": "datasets/probe/train.jsonl"},
    "Moderate": {"texts": ["hello"]},
    "EvaluateBackend": {},
    "CreateJob": {
        "dataset_path": "datasets/probe/train.jsonl",
        "backend": training_pb2.TRAINING_BACKEND_PEFT,
        "base_model": "tiny",
    },
    "LoadAdapter": {"name": "probe"},
}


@dataclass(frozen=True)
class Case:
    """One bad request and what must come back."""

    method: str
    label: str
    request: Message
    field: str
    codes: tuple[grpc.StatusCode, ...] = (grpc.StatusCode.INVALID_ARGUMENT,)


def request_class(service: ServiceDescriptor, method: str) -> type[Message]:
    return GetMessageClass(service.methods_by_name[method].input_type)


def set_path(message: Message, path: str, value: Any) -> None:
    """Set the field at ``a.b[0].c`` (a list index appends one element)."""
    parts = path.split(".")
    for part in parts[:-1]:
        name, index = _split(part)
        child = getattr(message, name)
        message = child.add() if index is not None else child
    name, index = _split(parts[-1])
    if index is not None:
        getattr(message, name).append(value)
    else:
        setattr(message, name, value)


def _split(part: str) -> tuple[str, int | None]:
    if part.endswith("[0]"):
        return part[:-3], 0
    return part, None


def bad_numbers(field: FieldDescriptor) -> list[float]:
    """Values outside the declared range the field's type can carry (0 is proto3's unset: skipped)."""
    allowed = NUMBER_RANGES[field.full_name]
    floating = field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
    unsigned = field.type in (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    )
    wide = field.type in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    )
    if floating:
        return [allowed.low - 0.5, allowed.high + 0.5, math.nan, math.inf, -1e300]
    top = (2**64 - 1 if unsigned else 2**63 - 1) if wide else (2**32 - 1 if unsigned else 2**31 - 1)
    values = [int(allowed.low) - 1, int(allowed.high) + 1, top]
    if not unsigned:
        values.append(-top)
    low = 0 if unsigned else -top
    return [v for v in values if low <= v <= top and v != 0 and not allowed.admits(v)]


def build(cls: type[Message], method: str, path: str, value: Any, *, baseline: bool = False) -> Message:
    """A request of ``cls`` with ``value`` at ``path``, over the method's baseline when asked."""
    message = cls(**(BASELINES.get(method, {}) if baseline else {}))
    set_path(message, path, value)
    return message


def cases_for(service: ServiceDescriptor) -> Iterator[Case]:
    for method in service.methods:
        cls = GetMessageClass(method.input_type)
        for path, field in request_fields(method.input_type):
            name = method.name
            make = partial(build, cls, name, path)

            if is_map(field):
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                long_key = "k" * (max_chars(key_field) + 1)
                yield Case(name, f"{path} key too long", map_request(cls(), path, long_key, 0.5), path)
                if is_number(value_field):
                    bad = map_request(cls(**BASELINES.get(name, {})), path, "k", math.nan)
                    yield Case(name, f"{path} value NaN", bad, f'{path}["k"]')
                continue
            if field.type == FieldDescriptor.TYPE_STRING:
                limit = max_chars(field)
                yield Case(name, f"{path} {limit + 1} chars", make("x" * (limit + 1)), path)
                kind = PATH_FIELDS.get(field.full_name)
                if kind is not None:
                    yield from path_cases(name, path, kind, make)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                yield Case(name, f"{path} = 99", make(99), path)
            elif is_number(field) and field.full_name in NUMBER_RANGES:
                for value in bad_numbers(field):
                    yield Case(name, f"{path} = {value}", make(value), path)


def map_request(message: Message, path: str, key: str, value: float) -> Message:
    """``message`` with ``path[key] = value`` set in its map field."""
    *parents, name = path.split(".")
    target: Any = message
    for part in parents:
        target = getattr(target, part)
    getattr(target, name)[key] = value
    return message


def path_cases(method: str, path: str, kind: str, make: Any) -> Iterator[Case]:
    denied = (grpc.StatusCode.PERMISSION_DENIED,) if kind == "volume" else (grpc.StatusCode.INVALID_ARGUMENT,)
    for value in TRAVERSALS:
        yield Case(method, f"{path} = {value}", make(value, baseline=True), path, denied)
    if kind == "file":
        yield Case(method, f"{path} = a directory", make("datasets", baseline=True), path)
    # Not a path at all, whatever the kind: INVALID_ARGUMENT (it used to be INTERNAL).
    yield Case(method, f"{path} = NUL", make("a\x00b", baseline=True), path)
    yield Case(method, f"{path} = 300-char name", make("d" * 300 + "/x", baseline=True), path)


async def outcome(
    channel: grpc.aio.Channel, service: ServiceDescriptor, case: Case
) -> tuple[grpc.StatusCode, str, str]:
    method = service.methods_by_name[case.method]
    out_cls = GetMessageClass(method.output_type)
    path = f"/{service.full_name}/{case.method}"
    if method.server_streaming:
        call = channel.unary_stream(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=out_cls.FromString
        )
    else:
        call = channel.unary_unary(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=out_cls.FromString
        )
    try:
        result = call(case.request, timeout=20)
        if method.server_streaming:
            async for _ in result:  # the first message of a long stream is enough to fail the case
                break
            result.cancel()
        else:
            await result
    except grpc.aio.AioRpcError as error:
        trailing = dict(error.trailing_metadata() or ())
        return error.code(), str(trailing.get(FIELD_METADATA_KEY, "")), error.details() or ""
    return grpc.StatusCode.OK, "", ""


def verdict(case: Case, code: grpc.StatusCode, field: str, details: str) -> str:
    """Empty when the answer is right, else what was wrong."""
    if code not in case.codes:
        return f"{code.name}: {details[:160]}"
    if code == grpc.StatusCode.INVALID_ARGUMENT and field != case.field:
        return f"names {field!r} instead of {case.field!r}: {details[:160]}"
    if code == grpc.StatusCode.PERMISSION_DENIED and case.field.split(".")[-1] not in details:
        return f"PERMISSION_DENIED without the field name: {details[:160]}"
    if any(filler * (QUOTE_CHARS + 1) in details for filler in "xkd"):
        return f"the value is echoed: {details[:160]}"
    return ""


def write_probe_files(home: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}?"}, {"role": "assistant", "content": f"a{i}."}]}
        for i in range(12)
    ]
    folder = home / "datasets" / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@asynccontextmanager
async def serve(name: str, home: Path) -> AsyncIterator[grpc.aio.Channel]:
    binding, settings = service_for(name, home)
    async with running_service(binding, settings) as srv:
        yield srv.channel()


def service_for(name: str, home: Path) -> tuple[ServiceBinding, ServiceSettings]:
    common: dict[str, Any] = {"home": home, "port": 0, "metrics_port": 0}
    if name == "generation":
        from talklike.generation.servicer import create_service as gen
        from talklike.generation.settings import GenerationSettings

        s1 = GenerationSettings(**common)
        return gen(s1), s1
    if name == "moderation":
        from talklike.moderation.servicer import create_service as mod
        from talklike.moderation.settings import ModerationSettings

        s2 = ModerationSettings(**common)
        return mod(s2), s2
    if name == "training":
        from talklike.training.servicer import create_service as train
        from talklike.training.settings import TrainingSettings

        s3 = TrainingSettings(**common, notify_inference=False, use_disk_agent=False)
        return train(s3), s3
    if name == "inference":
        from talklike.inference.servicer import create_service as infer
        from talklike.inference.settings import InferenceSettings

        s4 = InferenceSettings(**common, base_model="tiny", http_port=0)
        return infer(s4), s4
    from talklike.disk_agent.servicer import create_service as disk
    from talklike.disk_agent.settings import DiskAgentSettings

    s5 = DiskAgentSettings(**common, migration_targets=str(home / "nfs"))
    return disk(s5), s5


def test_every_field_is_classified() -> None:
    """A number needs a declared range (or a place among the free ones); a path-like string, a kind."""
    assert declared_gaps(SERVICES.values()) == []
    unclassified = sorted(
        field.full_name
        for service in SERVICES.values()
        for method in service.methods
        for _path, field in request_fields(method.input_type)
        if field.type == FieldDescriptor.TYPE_STRING
        and PATH_LIKE.search(field.name)
        and field.full_name not in PATH_FIELDS
        and field.full_name not in NOT_PATHS
    )
    assert unclassified == []
    assert set(UNBOUNDED_NUMBERS).isdisjoint(NUMBER_RANGES)


@pytest.mark.parametrize("name", list(SERVICES))
async def test_every_field_refuses_bad_values(name: str, tmp_path: Path) -> None:
    service = SERVICES[name]
    cases = list(cases_for(service))
    write_probe_files(tmp_path)
    failures = []
    async with serve(name, tmp_path) as channel:
        for case in cases:
            code, field, details = await outcome(channel, service, case)
            problem = verdict(case, code, field, details)
            if problem:
                failures.append(f"{case.method} {case.label}: {problem}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def first_string_field(service: ServiceDescriptor, method: str) -> FieldDescriptor | None:
    fields = service.methods_by_name[method].input_type.fields
    return next((f for f in fields if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated), None)


def raw_call(channel: grpc.aio.Channel, service: ServiceDescriptor, method: str) -> Any:
    path = f"/{service.full_name}/{method}"
    if service.methods_by_name[method].server_streaming:
        return channel.unary_stream(path)  # bytes in, bytes out: the payload goes as it is
    return channel.unary_unary(path)


@pytest.mark.parametrize("name", list(SERVICES))
async def test_invalid_protobuf_is_invalid_argument(name: str, tmp_path: Path) -> None:
    """A corrupt wire format, and invalid UTF-8 in a string field, to every RPC: a plain INVALID_ARGUMENT."""
    service = SERVICES[name]
    failures = []
    async with serve(name, tmp_path) as channel:
        for method in service.methods:
            payloads = {"corrupt wire format": b"\x0a\xff\xff\xff\xff\x0f"}
            field = first_string_field(service, method.name)
            if field is not None:
                payloads["invalid UTF-8"] = bytes([field.number << 3 | 2, 2]) + b"\xff\xfe"
            for label, payload in payloads.items():
                call = raw_call(channel, service, method.name)(payload, timeout=10)
                try:
                    if method.server_streaming:
                        async for _ in call:
                            break
                    else:
                        await call
                    failures.append(f"{method.name} {label}: accepted")
                except grpc.aio.AioRpcError as error:
                    details = error.details() or ""
                    if error.code() != grpc.StatusCode.INVALID_ARGUMENT or "class" in details:
                        failures.append(f"{method.name} {label}: {error.code().name} {details[:160]}")
    assert not failures, "\n".join(failures)
