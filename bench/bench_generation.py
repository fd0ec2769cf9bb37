"""Dataset generation: 3,000 pairs through the gRPC service, and pairs/s in-process.

Measured in the same run, each against a named baseline:

1. **through gRPC**: a real generation server on a loopback port (the shared runtime:
   interceptors, health, metrics) generates and writes a 3,000-pair dataset (all, train,
   val, held-out, meta, invalid/, stats.json with token statistics); the client times the
   whole stream. Baseline: the same run in-process (``DatasetBuilder.run``), so the ratio is
   what the service layer costs. Target from the issue: under 1 s.
2. **in-process pairs/s**: answers (even styles, exact slip rate, dedupe with redraw) plus
   fitting questions, no files. Baseline: a naive loop that fills random templates with
   ``str.format`` and picks a random question (no dedupe, no style mix, no slips, no topic
   fit) — the least any generator must do. Target: at least 20,000 pairs/s.

The machine is shared and noisy: each figure is the best and the median of several repeats.
Usage: ``python bench/bench_generation.py [--pack NAME] [--repeats N]`` (default pack: babis
when it is installed, else puffington).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from talklike.common.testing import running_service
from talklike.generation import tokens
from talklike.generation.dataset import DatasetBuilder, DatasetSpec
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings
from talklike.packs.loader import Pack, list_packs, load_pack
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc

COUNT = 3000
PAIRS_COUNT = 3000


async def both_runs(home: Path, pack: Pack, repeats: int) -> tuple[list[float], list[float]]:
    """(gRPC times, in-process times), interleaved so both see the same machine load."""
    settings = GenerationSettings(home=home, port=0, metrics_port=0)
    remote: list[float] = []
    local: list[float] = []
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.GenerationServiceStub(srv.channel())
        for i in range(repeats):
            spec = DatasetSpec(pack=pack, count=COUNT, seed=i, out_dir=home / "datasets" / f"bench-local-{i}")
            started = time.perf_counter()
            await DatasetBuilder(spec).run()
            local.append(time.perf_counter() - started)

            request = pb.GenerateDatasetRequest(pack=pack.name, count=COUNT, seed=i, out=f"bench-grpc-{i}")
            started = time.perf_counter()
            events = [event async for event in stub.GenerateDataset(request)]
            remote.append(time.perf_counter() - started)
            assert events[-1].summary.count == COUNT
    return remote, local


def pairs_per_second(pack: Pack, count: int, seed: int) -> float:
    spec = DatasetSpec(pack=pack, count=count, seed=seed, out_dir=Path("/nonexistent"), heldout_count=0)
    started = time.perf_counter()
    builder = DatasetBuilder(spec)
    answers = [a for batch in builder.generator.batches(count) for a in batch]
    examples = builder.template_questions(answers)
    elapsed = time.perf_counter() - started
    assert len(examples) == count
    return count / elapsed


def naive_pairs_per_second(pack: Pack, count: int, seed: int) -> float:
    rng = random.Random(seed)
    templates = [t.text.raw for t in pack.templates]
    questions = [q.text.raw for q in pack.questions]
    vocab = pack.placeholders
    # Every placeholder gets a value; str.format ignores the ones a text does not use.
    fill: Callable[[str], str] = lambda text: text.format(**{k: rng.choice(v) for k, v in vocab.items()})  # noqa: E731
    started = time.perf_counter()
    pairs = [
        (fill(rng.choice(questions)), fill(rng.choice(templates)) + "\n" + pack.signature)
        for _ in range(count)
    ]
    elapsed = time.perf_counter() - started
    assert len(pairs) == count
    return count / elapsed


def main() -> None:
    names = [e.name for e in list_packs(None)]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="babis" if "babis" in names else "puffington")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pack = load_pack(args.pack)
    tokens.encoding_for(GenerationSettings().token_model)  # the server preloads it before readiness too
    print(f"pack {pack.name}: {len(pack.templates)} templates, {len(pack.styles)} styles")

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        remote, local = asyncio.run(both_runs(home, pack, args.repeats))
    best_remote, best_local = min(remote), min(local)
    print(
        f"{COUNT:,} pairs generated and written through gRPC: best {best_remote:.3f} s, "
        f"median {statistics.median(remote):.3f} s (target < 1 s)"
    )
    print(
        f"  baseline, the same run in-process: best {best_local:.3f} s, median {statistics.median(local):.3f} s; "
        f"ratio gRPC / in-process = {best_remote / best_local:.2f}x"
    )

    ours = [pairs_per_second(pack, PAIRS_COUNT, seed) for seed in range(args.repeats)]
    naive = [naive_pairs_per_second(pack, PAIRS_COUNT, seed) for seed in range(args.repeats)]
    print(
        f"in-process pairs (answers + fitting questions, {PAIRS_COUNT:,} per run): best {max(ours):,.0f} pairs/s, "
        f"median {statistics.median(ours):,.0f} pairs/s (target >= 20,000/s)"
    )
    print(
        f"  baseline, a naive str.format loop (no dedupe, shares, slips or topic fit): best {max(naive):,.0f} pairs/s; "
        f"ratio talklike / naive = {max(ours) / max(naive):.2f}x"
    )


if __name__ == "__main__":
    main()
