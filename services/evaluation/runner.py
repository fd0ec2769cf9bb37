"""Run the before/after benchmark through the inference service and write the report.

Every held-out question is answered by the base model and by the adapter with the same
sampling and seed; requests are sent concurrently so the inference service batches them.
Perplexity of the reference answers comes from the Score RPC under both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from talklike.evaluation.heldout import HeldoutItem
from talklike.evaluation.judge import PairwiseJudge
from talklike.evaluation.report import write_report
from talklike.evaluation.results import EvalResult, EvalRow
from talklike.evaluation.scoring import AnswerScorer, PersonaLexicon, summarize
from talklike.inference.client import InferenceClient, sampling


@dataclass(frozen=True)
class EvalSettings:
    """How answers are generated for both sides."""

    max_new_tokens: int = 96
    temperature: float = 0.0
    seed: int = 7
    repetition_penalty: float = 1.1
    concurrency: int = 8


def run_eval(
    client: InferenceClient,
    items: list[HeldoutItem],
    adapter: str,
    lexicon: PersonaLexicon,
    out_dir: Path,
    run: str,
    settings: EvalSettings = EvalSettings(),
    judge: PairwiseJudge | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[EvalResult, dict[str, Path]]:
    """Answers, scores, perplexity and the report files; ``advance`` is told of each finished call."""
    started = time.perf_counter()
    params = sampling(
        settings.max_new_tokens,
        settings.temperature,
        settings.seed,
        repetition_penalty=settings.repetition_penalty,
    )
    base_name = client.models().base.name

    def answer(args: tuple[HeldoutItem, str]) -> str:
        item, which = args
        text = client.generate(item.prompt, which, params).text
        advance(1)
        return text

    def score(args: tuple[HeldoutItem, str]) -> tuple[float, int]:
        item, which = args
        reply = client.score(item.prompt, item.reference, which)
        advance(1)
        return reply.total_logprob, reply.token_count

    with ThreadPoolExecutor(settings.concurrency) as pool:
        before = list(pool.map(answer, [(i, "") for i in items]))
        after = list(pool.map(answer, [(i, adapter) for i in items]))
        with_reference = [i for i in items if i.reference]
        ppl: dict[str, float | None] = {"": None, adapter: None}
        for which in ("", adapter):
            scored = list(pool.map(score, [(i, which) for i in with_reference]))
            tokens = sum(n for _, n in scored)
            ppl[which] = math.exp(-sum(lp for lp, _ in scored) / tokens) if tokens else None

    scorer = AnswerScorer(lexicon)
    rows = []
    for index, (item, b, a) in enumerate(zip(items, before, after, strict=True), start=1):
        verdict = judge.judge(item.question, b, a).winner if judge else ""
        rows.append(
            EvalRow(
                index,
                item.question,
                item.style,
                item.topic,
                item.reference,
                b,
                a,
                scorer.score(b, item.question),
                scorer.score(a, item.question),
                verdict,
            )
        )
    judge_summary = None
    if judge:
        wins = [r.judge for r in rows]
        judge_summary = {
            "model": judge.model,
            "after_win_rate": wins.count("after") / len(wins),
            "before_win_rate": wins.count("before") / len(wins),
            "tie_rate": wins.count("tie") / len(wins),
            "method": "pairwise, both orders; a win counts only when both orders agree",
        }
    result = EvalResult(
        run=run,
        adapter=adapter,
        base_model=base_name,
        language=lexicon.language,
        signature=lexicon.signature,
        sampling={
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "seed": settings.seed,
            "repetition_penalty": settings.repetition_penalty,
        },
        rows=rows,
        before=summarize(before, [r.before_scores for r in rows]),
        after=summarize(after, [r.after_scores for r in rows]),
        perplexity_before=ppl[""],
        perplexity_after=ppl[adapter],
        judge=judge_summary,
        created_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        wall_time_s=time.perf_counter() - started,
    )
    return result, write_report(result, out_dir)
