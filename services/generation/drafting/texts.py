"""The pack's texts: answer templates per style, then question templates, in batches.

Template batches run in rounds (one batch per unfinished style at a time) whose results are
committed in a fixed style order, so a rerun replays the same prompts from the cache. Each
batch's texts are checked (``answers.check_text``) and must be new against everything kept so
far (``gates.TextIndex``); a style, or the questions, stops after ``MAX_STALLED_BATCHES``
batches in a row that add nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from talklike.generation.drafting import prompts
from talklike.generation.drafting.answers import (
    CheckedText,
    Malformed,
    QuestionsAnswer,
    Rejection,
    TemplatesAnswer,
    TextRules,
    check_text,
    parse_list,
)
from talklike.generation.drafting.gates import (
    MIN_TEMPLATES,
    TextIndex,
    batch_budget,
    question_count,
    quotas,
)
from talklike.generation.drafting.state import TOPIC, DraftContext, Parsed, gather_all

#: A style (or the questions) stops after this many batches in a row that add nothing.
MAX_STALLED_BATCHES = 3
#: Templates of the same style shown in a batch prompt as "already written".
SHOWN_WRITTEN = 6
#: Rough tokens per item, for each step's max_tokens (a reply cut short is malformed JSON).
TOKENS_PER_TEMPLATE = 90
TOKENS_PER_QUESTION = 45


def _rules(ctx: DraftContext, step: str, *, template: bool) -> TextRules:
    examples = (
        prompts.example_template(TOPIC, [n for n in ctx.plan.vocab if n != TOPIC])
        if template
        else prompts.example_questions(TOPIC)
    )
    return TextRules(
        step=step,
        placeholders={k: tuple(v) for k, v in ctx.plan.vocab.items()},
        topic_name=TOPIC,
        signature=ctx.plan.card["signature"],
        require_placeholder=template,
        require_topic=template,
        min_chars=15 if template else 8,
        max_chars=400 if template else 300,
        example_texts=frozenset(" ".join(e.casefold().split()) for e in examples),
    )


def _text_parser(
    answer_type: type[TemplatesAnswer] | type[QuestionsAnswer], rules: TextRules, index: TextIndex
) -> Callable[[str], Parsed]:
    """Parse a batch of texts: kept ones are new against ``index`` and each other (nothing is
    added to ``index`` here: the caller commits, in a fixed order)."""

    def parse(content: str) -> Parsed:
        answer, rejected = parse_list(content, answer_type, rules.step)
        items = answer.templates if isinstance(answer, TemplatesAnswer) else answer.questions
        kept: list[CheckedText] = []
        local = TextIndex()
        for item in items:
            checked = check_text(item, rules)
            if isinstance(checked, Rejection):
                rejected.append(checked)
                continue
            why = index.reason(checked.text) or local.reason(checked.text)
            if why:
                rejected.append(_duplicate(rules.step, checked.text, why))
                continue
            local.add(checked.text, f"item {len(kept) + 1} of this answer")
            kept.append(checked)
        if not kept:
            reasons = "; ".join(f"{r.item[:60]!r}: {r.reason}" for r in rejected[:3])
            raise Malformed(f"none of the {len(items)} items can be used ({reasons})")
        return Parsed(kept, rejected)

    return parse


def _commit(
    ctx: DraftContext, step: str, parsed: Parsed, index: TextIndex, room: int, label: Callable[[int], str]
) -> list[CheckedText]:
    """Add a parsed batch to ``index`` (at most ``room`` items); the rest is recorded as rejected."""
    ctx.log.items.extend(parsed.rejected)
    added: list[CheckedText] = []
    for checked in parsed.value:
        why = index.reason(checked.text)
        if why:
            ctx.log.items.append(_duplicate(step, checked.text, why))
        elif len(added) >= room:
            ctx.log.items.append(Rejection(step, checked.text, "beyond the requested count", ""))
        else:
            index.add(checked.text, label(len(index) + 1))
            added.append(checked)
    return added


async def draft_templates(ctx: DraftContext) -> None:
    """Template batches in rounds: one batch per unfinished style at a time, committed in style order."""
    spec = ctx.spec
    style_ids = [s["id"] for s in ctx.plan.styles]
    quota = ctx.plan.quota = quotas(spec.template_count, style_ids)
    per_call = max(1, spec.llm.batch_size)
    budget = {s: batch_budget(quota[s], per_call) for s in style_ids}
    stalled = dict.fromkeys(style_ids, 0)
    kept: dict[str, list[CheckedText]] = {s: [] for s in style_ids}
    by_id = {s["id"]: s for s in ctx.plan.styles}
    rules = {s: _rules(ctx, f"templates/{s}", template=True) for s in style_ids}
    index = TextIndex()
    await ctx.on_progress("templates", 0, spec.template_count)

    def open_(style: str) -> bool:
        return (
            len(kept[style]) < quota[style]
            and ctx.plan.style_calls[style] < budget[style]
            and stalled[style] < MAX_STALLED_BATCHES
        )

    while active := [s for s in style_ids if open_(s)]:
        batches = []
        for style in active:
            ctx.plan.style_calls[style] += 1
            count = min(per_call, quota[style] - len(kept[style]))
            written = [c.text for c in kept[style][-SHOWN_WRITTEN:]]
            messages = prompts.templates(
                ctx.plan.card,
                by_id[style],
                ctx.plan.vocab,
                ctx.plan.meanings,
                TOPIC,
                count,
                written,
                spec.examples,
            )
            parse = _text_parser(TemplatesAnswer, rules[style], index)
            label = f"templates/{style}#{ctx.plan.style_calls[style]}"
            batches.append(ctx.ask("templates", label, messages, TOKENS_PER_TEMPLATE * count + 60, parse))
        results = await gather_all(batches)
        for style, parsed in zip(active, results, strict=True):
            added: list[CheckedText] = []
            if parsed is not None:
                room = quota[style] - len(kept[style])
                added = _commit(ctx, f"templates/{style}", parsed, index, room, lambda n: f"template {n}")
                kept[style].extend(added)
            stalled[style] = 0 if added else stalled[style] + 1
        await ctx.on_progress("templates", sum(len(v) for v in kept.values()), spec.template_count)
    ctx.plan.templates = kept
    for style in style_ids:
        if len(kept[style]) < quota[style]:
            why = "stalled" if stalled[style] >= MAX_STALLED_BATCHES else "out of calls"
            ctx.log.notes.append(
                f"style {style}: {len(kept[style])} of {quota[style]} templates ({why} after "
                f"{ctx.plan.style_calls[style]} calls)"
            )
    # A style without templates cannot be mixed in: drop it while others have some.
    empty = [s for s in style_ids if not kept[s]]
    if len(empty) < len(style_ids):
        for style in empty:
            ctx.log.notes.append(f"style {style} dropped: no usable templates")
            del kept[style]
        ctx.plan.styles = [s for s in ctx.plan.styles if s["id"] in kept]
    total = sum(len(v) for v in kept.values())
    if total < MIN_TEMPLATES:
        failed = [s for s in ctx.log.steps if s["step"].startswith("templates/") and not s["ok"]]
        last = f" (last problem: {failed[-1]['problem']})" if failed else ""
        raise ctx.fail(
            f"the LLM at {ctx.spec.llm.base_url} gave {total} usable templates of the "
            f"{spec.template_count} asked for in {sum(ctx.plan.style_calls.values())} batches; a pack "
            f"needs at least {MIN_TEMPLATES}{last}"
        )


async def draft_questions(ctx: DraftContext) -> None:
    wanted = question_count(ctx.spec.template_count)
    per_call = max(1, ctx.spec.llm.batch_size)
    budget = batch_budget(wanted, per_call)
    rules = _rules(ctx, "questions", template=False)
    index = TextIndex()
    kept: list[CheckedText] = []
    calls = stalled = 0
    await ctx.on_progress("questions", 0, wanted)
    while len(kept) < wanted and calls < budget and stalled < MAX_STALLED_BATCHES:
        calls += 1
        count = min(per_call, wanted - len(kept))
        written = [c.text for c in kept[-SHOWN_WRITTEN:]]
        messages = prompts.questions(ctx.plan.card, ctx.plan.vocab, ctx.plan.meanings, TOPIC, count, written)
        parse = _text_parser(QuestionsAnswer, rules, index)
        parsed = await ctx.ask(
            "questions", f"questions#{calls}", messages, TOKENS_PER_QUESTION * count + 60, parse
        )
        added: list[CheckedText] = []
        if parsed is not None:
            added = _commit(
                ctx,
                "questions",
                parsed,
                index,
                wanted - len(kept),
                lambda n: f"question {n}",
            )
            kept.extend(added)
        stalled = 0 if added else stalled + 1
        await ctx.on_progress("questions", len(kept), wanted)
    if not any(q.topic == "*" for q in kept):
        raise ctx.fail(
            f"the LLM at {ctx.spec.llm.base_url} gave no usable question with {{{TOPIC}}} "
            f"in {calls} calls (every style needs one)"
        )
    if len(kept) < wanted:
        ctx.log.notes.append(f"{len(kept)} questions of {wanted} asked for")
    ctx.plan.questions = kept


def _duplicate(step: str, text: str, why: str) -> Rejection:
    category = "exact duplicate" if why.startswith("exact") else "near duplicate"
    return Rejection(step, text, category, why)
