"""Inference metrics: per adapter, time to first token and tokens/s; queue depth and active generations;
the transformers backend's shared-prefix cache (hit rate = hits / lookups, size, evictions)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram


class InferenceMetrics:
    """Created unregistered; the server runtime registers them in its registry (binding collectors)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "talklike_inference_requests",
            "Generations finished, by adapter and stop reason.",
            ["adapter", "stop_reason"],
            registry=None,
        )
        self.ttft = Histogram(
            "talklike_inference_time_to_first_token_seconds",
            "Time from admission to the first generated token, by adapter.",
            ["adapter"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=None,
        )
        self.tokens_per_second = Histogram(
            "talklike_inference_tokens_per_second",
            "Generated tokens per second of one generation, by adapter.",
            ["adapter"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=None,
        )
        self.tokens = Counter(
            "talklike_inference_generated_tokens", "Tokens generated, by adapter.", ["adapter"], registry=None
        )
        self.queue_depth = Gauge(
            "talklike_inference_queue_depth", "Requests waiting for a generation slot.", registry=None
        )
        self.active = Gauge(
            "talklike_inference_active_generations", "Generations holding a slot.", registry=None
        )

        self.prefix_lookups = Counter(
            "talklike_inference_prefix_cache_lookups",
            "Prompts whose shared prefix (system prompt and template framing) was looked up, by result "
            "(hit: its KV was reused; miss: computed, and kept for the next).",
            ["result"],
            registry=None,
        )
        self.prefix_reused_tokens = Counter(
            "talklike_inference_prefix_cache_reused_tokens",
            "Prompt tokens not prefilled because their KV came from the prefix cache.",
            registry=None,
        )
        self.prefix_evictions = Counter(
            "talklike_inference_prefix_cache_evictions",
            "Prefix cache entries dropped to stay within its entry and byte bounds.",
            registry=None,
        )
        self.prefix_entries = Gauge(
            "talklike_inference_prefix_cache_entries", "Prefixes whose KV is cached.", registry=None
        )
        self.prefix_bytes = Gauge(
            "talklike_inference_prefix_cache_bytes", "Memory held by cached prefix KV.", registry=None
        )

    def collectors(self) -> list[object]:
        return [
            self.requests,
            self.ttft,
            self.tokens_per_second,
            self.tokens,
            self.queue_depth,
            self.active,
            self.prefix_lookups,
            self.prefix_reused_tokens,
            self.prefix_evictions,
            self.prefix_entries,
            self.prefix_bytes,
        ]
