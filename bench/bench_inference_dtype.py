"""Serving in bfloat16 vs float32 on the CPU: the transformers backend's batched decode, same requests.

Baseline: the same backend with `dtype=float32` (the default), measured in the same run on the same
model (gemma3-270m by default: the demo's base model). Each side answers BATCH chat requests at once
(the demo's benchmark sends 32), TOKENS new tokens each, sampled with a seed per request, the
tokens counted as they come (the untuned base model rarely ends its turn early); best of ROUNDS, the
two dtypes alternated. Prints tokens/s of each and the ratio bf16/fp32. On a CPU without bf16
instructions bf16 is emulated: the ratio shows that too (auto then picks float32).

    .venv/bin/python bench/bench_inference_dtype.py --models-dir var/demo/models
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from talklike.inference.backends.transformers_backend import TransformersBackend
from talklike.inference.settings import InferenceSettings
from talklike.inference.types import ChatTurn, GenerationRequest, Prompt, Sampling
from talklike.models.precision import cpu_multiplies_bf16

SYSTEM = "Jsi satirická parodie politika Andreje Babiše: hovorová čeština se slovenskými chybami."
QUESTIONS = (
    "Jak chcete zastavit zdražování potravin?",
    "Co byste udělal s důchody?",
    "Proč vás kritizují v Bruselu?",
    "Jak vyřešíte ceny energií?",
)


async def decode(backend: TransformersBackend, batch: int, tokens: int, adapter: str = "") -> float:
    """Tokens per second for ``batch`` requests of ``tokens`` new tokens, all in flight at once."""

    async def one(index: int) -> int:
        prompt = Prompt(
            chat=(ChatTurn("system", SYSTEM), ChatTurn("user", QUESTIONS[index % len(QUESTIONS)]))
        )
        sampling = Sampling(
            max_new_tokens=tokens, temperature=0.5, top_k=40, presence_penalty=1.0, seed=index
        )
        request = GenerationRequest(
            f"r{index}", tuple(backend.encode(prompt)), adapter, sampling, prompt=prompt
        )
        count = 0
        async for chunk in backend.generate(request):
            count += len(chunk.token_ids)
        return count

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(batch)))
    return sum(counts) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument(
        "--models-dir", default="var/demo/models", help="a data home's models/ (converted once)"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapter", default="", help="load this adapter and decode with it")
    parser.add_argument("--adapters-dir", default="var/demo/adapters")
    parser.add_argument("--prefix-cache", type=int, default=0, help="prefix cache entries (the service: 32)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "models").symlink_to(Path(args.models_dir).resolve())
        if args.adapter:
            (home / "adapters").symlink_to(Path(args.adapters_dir).resolve())
        backends = {}
        for dtype in ("float32", "bfloat16"):
            settings = InferenceSettings(
                home=home,
                base_model=args.model,
                dtype=dtype,
                max_concurrency=args.batch,
                torch_threads=args.threads,
                prefix_cache_entries=args.prefix_cache,
                preload_adapters=args.adapter,
            )
            backends[dtype] = TransformersBackend(settings)
            await backends[dtype].start()
            await decode(backends[dtype], 2, 4)  # warm-up
        rates: dict[str, list[float]] = {d: [] for d in backends}
        for _ in range(args.rounds):
            for dtype, backend in backends.items():
                rates[dtype].append(await decode(backend, args.batch, args.tokens, args.adapter))
        for backend in backends.values():
            await backend.close()
    fp32, bf16 = max(rates["float32"]), max(rates["bfloat16"])
    native = "has" if cpu_multiplies_bf16() else "has no"
    print(
        f"{args.model}, {args.batch} requests x {args.tokens} new tokens, best of {args.rounds} (this CPU {native} bf16 instructions)"
    )
    print(f"float32:  {fp32:.1f} tokens/s")
    print(f"bfloat16: {bf16:.1f} tokens/s")
    print(f"ratio bf16/fp32: {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
