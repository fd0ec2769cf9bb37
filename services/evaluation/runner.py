"""Run the before/after benchmark through the inference service and write the report.

Every question (template-held-out and the pack's free-form ones alike) is answered by the
base model and by the adapter with the same sampling and seed; requests are sent
``EvalSettings.concurrency`` at a time (0: all questions of a side at once) so the inference
service batches them. Perplexity of the reference answers (template questions have one) comes
from the Score RPC under both, kept per question for the bootstrap interval and the sign test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from talklike.common.errors import InvalidArgument
from talklike.evaluation.heldout import HeldoutItem
from talklike.evaluation.judge import PairwiseJudge
from talklike.evaluation.report import write_report
from talklike.evaluation.results import EvalResult, EvalRow
from talklike.evaluation.scoring import AnswerScorer, PersonaLexicon, summarize
from talklike.evaluation.stats import binomial_two_sided, pooled_perplexity, rounded_p, wilson
from talklike.inference.client import InferenceClient, sampling


@dataclass(frozen=True)
class EvalSettings:
    """How answers are generated for both sides."""

    max_new_tokens: int = 96
    temperature: float = 0.0
    #: Sample among the k likeliest tokens (0 = all); cheaper than top-p on a 262k vocabulary.
    top_k: int = 0
    seed: int = 7
    #: Over the prompt's and the answer's tokens: it also discourages the question's words.
    repetition_penalty: float = 1.1
    #: Over the answer's own tokens only (OpenAI / vLLM semantics): once, and per use.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: Requests in flight at once; 0 sends every question of a side at once (the service batches them).
    concurrency: int = 8


def eval_calls(items: list[HeldoutItem]) -> int:
    """How many calls ``run_eval`` reports through ``advance``: two answers per question, two scores per reference."""
    return 2 * len(items) + 2 * sum(1 for i in items if i.reference)


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
    """Answers, scores, perplexity and the report files; ``advance`` is told of each finished call.

    ``items`` may mix sources (``HeldoutItem.source``: read_heldout's "template" items and
    freeform_items' "freeform" ones); the report shows each source and both together.
    """
    if settings.concurrency < 0:
        raise InvalidArgument("concurrency", f"must be 0 (all at once) or more, got {settings.concurrency}")
    started = time.perf_counter()
    scorer = AnswerScorer(lexicon)  # first: a language without a word list fails before any call
    base_name = client.models().base.name

    def answer(args: tuple[int, str]) -> str:
        # Question n is sampled with seed + n on both sides: the same draw before and after, and
        # not one shared random stream that would push every question to the same opening.
        number, which = args
        params = sampling(
            settings.max_new_tokens,
            settings.temperature,
            settings.seed + number,
            top_k=settings.top_k,
            repetition_penalty=settings.repetition_penalty,
            presence_penalty=settings.presence_penalty,
            frequency_penalty=settings.frequency_penalty,
        )
        text = client.generate(items[number].prompt, which, params).text
        advance(1)
        return text

    def score(args: tuple[HeldoutItem, str]) -> tuple[float, int]:
        item, which = args
        reply = client.score(item.prompt, item.reference, which)
        advance(1)
        return reply.total_logprob, reply.token_count

    referenced = [n for n, item in enumerate(items) if item.reference]
    with ThreadPoolExecutor(settings.concurrency or max(1, len(items))) as pool:
        before = list(pool.map(answer, [(n, "") for n in range(len(items))]))
        after = list(pool.map(answer, [(n, adapter) for n in range(len(items))]))
        scored_before = dict(
            zip(referenced, pool.map(score, [(items[n], "") for n in referenced]), strict=True)
        )
        scored_after = dict(
            zip(referenced, pool.map(score, [(items[n], adapter) for n in referenced]), strict=True)
        )

    rows = []
    for number, (item, b, a) in enumerate(zip(items, before, after, strict=True)):
        verdict = judge.judge(item.question, b, a).winner if judge else ""
        prompt_text = "\n".join(message["content"] for message in item.prompt)
        rows.append(
            EvalRow(
                number + 1,
                item.question,
                item.style,
                item.topic,
                item.reference,
                b,
                a,
                scorer.score(b, item.question, item.topic, prompt_text),
                scorer.score(a, item.question, item.topic, prompt_text),
                verdict,
                item.source,
                scored_before.get(number),
                scored_after.get(number),
            )
        )
    judge_summary = None
    if judge:
        wins = [r.judge for r in rows]
        after_wins, before_wins = wins.count("after"), wins.count("before")
        judge_summary = {
            "model": judge.model,
            "after_win_rate": after_wins / len(wins),
            "after_win_ci": wilson(after_wins, len(wins)).as_list(),
            "before_win_rate": before_wins / len(wins),
            "tie_rate": wins.count("tie") / len(wins),
            # Sign test on the decided questions: is the adapter preferred more often than chance?
            "p_value": rounded_p(binomial_two_sided(after_wins, after_wins + before_wins)),
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
            "top_k": settings.top_k,
            "seed": settings.seed,
            "repetition_penalty": settings.repetition_penalty,
            "presence_penalty": settings.presence_penalty,
            "frequency_penalty": settings.frequency_penalty,
        },
        rows=rows,
        before=summarize(before, [r.before_scores for r in rows]),
        after=summarize(after, [r.after_scores for r in rows]),
        perplexity_before=_perplexity(list(scored_before.values())),
        perplexity_after=_perplexity(list(scored_after.values())),
        judge=judge_summary,
        created_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        wall_time_s=time.perf_counter() - started,
    )
    return result, write_report(result, out_dir)


def _perplexity(scored: list[tuple[float, int]]) -> float | None:
    """The pooled perplexity, None when nothing was scored (no question had a reference)."""
    return pooled_perplexity(scored) if sum(n for _, n in scored) else None
