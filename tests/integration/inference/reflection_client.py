"""A gRPC client that knows nothing of talklike's stubs: it learns the API through server reflection.

This is what another tool (grpcurl, a service in another language) does, so the tests that use
it prove the contract is usable from the .proto alone.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "talklike.v1.InferenceService"


class ReflectionClient:
    """Calls ``talklike.v1.InferenceService`` with message classes built from reflection."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))
        self.service = self.pool.FindServiceByName(SERVICE)

    def message(self, method: str, **fields: Any) -> Any:
        descriptor = self.service.FindMethodByName(method).input_type
        cls = message_factory.GetMessageClass(descriptor)
        request = cls()
        _fill(request, fields)
        return request

    def _callable(self, method: str, streaming: bool) -> Any:
        desc = self.service.FindMethodByName(method)
        out = message_factory.GetMessageClass(desc.output_type)
        path = f"/{SERVICE}/{method}"
        factory = self.channel.unary_stream if streaming else self.channel.unary_unary
        return factory(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=out.FromString
        )

    def unary(self, method: str, request: Any, timeout: float = 30) -> Any:
        return self._callable(method, False)(request, timeout=timeout)

    def stream(self, method: str, request: Any, timeout: float = 60) -> Any:
        return self._callable(method, True)(request, timeout=timeout)

    def close(self) -> None:
        self.channel.close()


def _fill(message: Any, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, dict):
            _fill(getattr(message, key), value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                _fill(getattr(message, key).add(), item)
        elif isinstance(value, list):
            getattr(message, key).extend(value)
        else:
            setattr(message, key, value)
