"""Moderation: local backend texts/s in-process, a 1,000-text gRPC batch, a 3,000-example dataset.

Measured in the same run, each against a named baseline:

1. **in-process texts/s** of the local backend (normalize, tokenize, concept index, rules,
   context dampeners, reasons) on the turns of a generated persona dataset and the shipped
   labelled set. Baseline: a *word-list regex* — the lexicon's words and stems as one
   compiled alternation with word boundaries, run over the lowercased text — the least a
   word-list filter does (no diacritics folding, no rules, no context, no scores).
   Target from the issue: at least 5,000 texts/s.
2. **a 1,000-text Moderate call through gRPC**: a real moderation server on a loopback port
   (the shared runtime: interceptors, health, metrics); the client times the call.
   Baseline: the same 1,000 texts classified in-process, so the ratio is what the service
   layer costs. Target: under 0.5 s.
3. **a 3,000-example ModerateDataset through gRPC** (read, score each distinct turn, judge,
   write moderated.jsonl, removed.jsonl, quarantine, report.json, report.md). Baseline: the
   same run in-process (``moderate_dataset``).

The machine is shared and noisy: each figure is the best and the median of several repeats.
Usage: ``python bench/bench_moderation.py [--repeats N] [--pack NAME]`` (default pack: babis
when it is installed, else puffington).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path

from talklike.common.chat_data.jsonl import iter_file_lines
from talklike.common.testing import running_service
from talklike.generation.dataset import DatasetBuilder, DatasetSpec
from talklike.moderation.dataset import moderate_dataset
from talklike.moderation.evaluation import load_set
from talklike.moderation.local import LocalBackend, LocalClassifier, default_lexicon
from talklike.moderation.policy import make_policy
from talklike.moderation.servicer import create_service
from talklike.moderation.settings import ModerationSettings
from talklike.packs.loader import list_packs, load_pack
from talklike.v1 import moderation_pb2 as pb
from talklike.v1 import moderation_pb2_grpc as pb_grpc

BATCH = 1000
EXAMPLES = 3000


def corpus(dataset: Path) -> list[str]:
    """Every turn of the generated dataset (not deduplicated) plus the labelled set: realistic lengths and mix."""
    import json

    texts = [t.text for t in load_set()]
    for _, raw in iter_file_lines(dataset):
        texts.extend(m["content"] for m in json.loads(raw)["messages"])
    return texts


def word_list_regex() -> re.Pattern[str]:
    """The baseline filter: every word form and stem of the lexicon in one alternation."""
    lex = default_lexicon()
    forms = set(lex.words) | set(lex.phrases)
    stems = {p for group in lex.prefixes.values() for p, _, _ in group}
    alternation = "|".join(sorted((re.escape(w) for w in forms), key=len, reverse=True))
    prefixes = "|".join(sorted((re.escape(p) for p in stems), key=len, reverse=True))
    return re.compile(rf"\b(?:(?:{alternation})\b|(?:{prefixes})\w*)")


def texts_per_second(texts: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """(ours, naive) texts/s, interleaved so both see the same machine load."""
    clf = LocalClassifier()
    pattern = word_list_regex()
    ours: list[float] = []
    naive: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        results = clf.classify_many(texts)
        ours.append(len(texts) / (time.perf_counter() - started))
        assert len(results) == len(texts)
        started = time.perf_counter()
        hits = [pattern.findall(text.lower()) for text in texts]
        naive.append(len(texts) / (time.perf_counter() - started))
        assert len(hits) == len(texts)
    return ours, naive


async def service_runs(home: Path, texts: list[str], dataset: Path, repeats: int) -> dict[str, list[float]]:
    settings = ModerationSettings(home=home, port=0, metrics_port=0)
    times: dict[str, list[float]] = {
        "grpc_batch": [],
        "local_batch": [],
        "grpc_dataset": [],
        "local_dataset": [],
    }
    backend = LocalBackend()
    batch = texts[:BATCH]
    policy = make_policy({}, [], "drop", None, settings.flagged_share_limit)
    async with running_service(create_service(settings), settings) as srv:
        stub = pb_grpc.ModerationServiceStub(srv.channel())
        await stub.Moderate(pb.ModerateRequest(texts=["warm-up"]))
        for i in range(repeats):
            started = time.perf_counter()
            await backend.classify(batch)
            times["local_batch"].append(time.perf_counter() - started)
            started = time.perf_counter()
            reply = await stub.Moderate(pb.ModerateRequest(texts=batch))
            times["grpc_batch"].append(time.perf_counter() - started)
            assert len(reply.results) == BATCH

            started = time.perf_counter()
            await moderate_dataset(
                iter_file_lines(dataset),
                file_name="all.jsonl",
                out_dir=home / "datasets" / f"local-{i}",
                backend=backend,
                policy=policy,
            )
            times["local_dataset"].append(time.perf_counter() - started)
            request = pb.ModerateDatasetRequest(path=str(dataset.relative_to(home)), out=f"grpc-{i}")
            started = time.perf_counter()
            events = [e async for e in stub.ModerateDataset(request)]
            times["grpc_dataset"].append(time.perf_counter() - started)
            summary = events[-1].summary
            assert (
                summary.kept_count + summary.removed_count + summary.quarantined_count == summary.line_count
            )
    return times


def main() -> None:
    names = [e.name for e in list_packs(None) if e.pack is not None]
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pack", default="babis" if "babis" in names else "puffington")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    default_lexicon()  # compiled once per process; the server compiles it before readiness too
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        out = home / "datasets" / "persona"
        pack = load_pack(args.pack)
        asyncio.run(
            DatasetBuilder(DatasetSpec(pack=pack, count=EXAMPLES, seed=1, out_dir=out, heldout_count=0)).run()
        )
        dataset = out / "all.jsonl"
        texts = corpus(dataset)
        print(
            f"corpus: {len(texts):,} texts (turns of a {EXAMPLES:,}-example {pack.name} dataset + the labelled set)"
        )

        ours, naive = texts_per_second(texts, args.repeats)
        print(
            f"local backend in-process: best {max(ours):,.0f} texts/s, median {statistics.median(ours):,.0f} texts/s "
            "(target >= 5,000/s)"
        )
        print(
            f"  baseline, a word-list regex over the lowercased text: best {max(naive):,.0f} texts/s; "
            f"ratio ours / baseline = {max(ours) / max(naive):.2f}x"
        )

        times = asyncio.run(service_runs(home, texts, dataset, args.repeats))
    grpc_b, local_b = times["grpc_batch"], times["local_batch"]
    print(
        f"{BATCH:,}-text Moderate through gRPC: best {min(grpc_b) * 1000:.0f} ms, median "
        f"{statistics.median(grpc_b) * 1000:.0f} ms (target < 500 ms)"
    )
    print(
        f"  baseline, the same texts in-process: best {min(local_b) * 1000:.0f} ms; "
        f"ratio gRPC / in-process = {min(grpc_b) / min(local_b):.2f}x"
    )
    grpc_d, local_d = times["grpc_dataset"], times["local_dataset"]
    print(
        f"{EXAMPLES:,}-example ModerateDataset through gRPC (all files written): best {min(grpc_d):.3f} s, "
        f"median {statistics.median(grpc_d):.3f} s"
    )
    print(
        f"  baseline, the same run in-process: best {min(local_d):.3f} s; "
        f"ratio gRPC / in-process = {min(grpc_d) / min(local_d):.2f}x"
    )


if __name__ == "__main__":
    main()
