"""The persona card: who speaks (persona), how (voice), in which tones (styles), about what
(topics), with which other slots (placeholders) and their values (vocabulary).

Persona, voice, styles and topics stop the draft when they fail (``DraftContext.essential``);
a placeholder without usable values is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from talklike.generation.drafting import prompts
from talklike.generation.drafting.answers import (
    Malformed,
    PersonaAnswer,
    PlaceholdersAnswer,
    Rejection,
    StylesAnswer,
    TopicsAnswer,
    ValuesAnswer,
    VoiceAnswer,
    clean_values,
    parse_as,
    parse_list,
    placeholder_name,
    slug,
)
from talklike.generation.drafting.gates import topic_count, value_count
from talklike.generation.drafting.state import TOPIC, DraftContext, Parsed, gather_all
from talklike.packs.schema import LANGUAGE_RE

#: Placeholders besides the topic, and the fewest usable items some steps must give.
PLACEHOLDER_NAMES = 3
MIN_TOPICS = 4
MIN_VALUES = 3


async def draft_persona(ctx: DraftContext) -> None:
    spec = ctx.spec

    def parse(content: str) -> Parsed:
        answer = parse_as(content, PersonaAnswer)
        if answer.display_name.casefold() == str(prompts.EXAMPLE_PERSONA["display_name"]).casefold():
            raise Malformed("that is the example persona; describe the persona the user described")
        language = spec.language or answer.language
        if not language or not LANGUAGE_RE.match(language):
            raise Malformed(f"language {answer.language!r} is not a language code such as en or cs")
        signature = answer.signature or answer.display_name
        for key, value in (("display_name", answer.display_name), ("signature", signature)):
            if "{" in value or "}" in value:
                raise Malformed(f"{key} must not contain braces")
        card = {
            "display_name": answer.display_name,
            "language": language,
            "signature": signature,
            "satire": spec.satire,
            "description": " ".join(answer.description.split()),
        }
        return Parsed(card)

    messages = prompts.persona(spec.description, spec.language, spec.examples)
    ctx.plan.card = await ctx.essential("persona", messages, 300, parse)


async def draft_voice(ctx: DraftContext) -> None:
    card = ctx.plan.card

    def parse(content: str) -> Parsed:
        answer = parse_as(content, VoiceAnswer)
        if answer.system_prompt == prompts.EXAMPLE_VOICE["system_prompt"]:
            raise Malformed("that is the example's system prompt; write one for this persona")
        phrases, rejected = clean_values("voice", answer.catchphrases, max_chars=80)
        if not phrases:
            raise Malformed("catchphrases has no usable phrase (short, one line, no braces)")
        fillers, bad_fillers = clean_values("voice", answer.fillers, max_chars=24)
        prompt_text = " ".join(answer.system_prompt.split())
        return Parsed(
            {"system_prompt": prompt_text, "catchphrases": phrases, "fillers": fillers},
            rejected + bad_fillers,
        )

    messages = prompts.voice(card, ctx.spec.examples)
    ctx.plan.voice = await ctx.essential("voice", messages, 400, parse)


async def draft_styles(ctx: DraftContext) -> None:
    wanted = ctx.spec.style_count
    example_ids = {s["id"] for s in prompts.EXAMPLE_STYLES}

    def parse(content: str) -> Parsed:
        answer = parse_as(content, StylesAnswer)
        kept: list[dict[str, str]] = []
        rejected: list[Rejection] = []
        for item in answer.styles:
            style_id = slug(item.id or item.name)
            shown = f"{item.id or item.name}: {item.description}"
            if not style_id:
                rejected.append(Rejection("styles", shown, "not a valid id", "no letters in id or name"))
            elif style_id in example_ids and item.description in {
                s["description"] for s in prompts.EXAMPLE_STYLES
            }:
                rejected.append(Rejection("styles", shown, "copied from the example", "not this persona's"))
            elif any(s["id"] == style_id for s in kept):
                rejected.append(Rejection("styles", shown, "duplicate value", f"id {style_id!r} twice"))
            elif len(kept) >= wanted:
                rejected.append(Rejection("styles", shown, "beyond the requested count", ""))
            else:
                kept.append({"id": style_id, "name": item.name, "description": item.description})
        if not kept:
            raise _too_few("styles", wanted, rejected)
        return Parsed(kept, rejected)

    messages = prompts.styles(ctx.plan.card, wanted, ctx.spec.examples)
    ctx.plan.styles = await ctx.essential("styles", messages, 120 * wanted + 80, parse)
    if len(ctx.plan.styles) < wanted:
        ctx.log.notes.append(f"{len(ctx.plan.styles)} styles of {wanted} asked for")


async def draft_topics(ctx: DraftContext) -> None:
    wanted = topic_count(ctx.spec.template_count)

    def parse(content: str) -> Parsed:
        answer, rejected = parse_list(content, TopicsAnswer, "topics")
        values, bad = clean_values("topics", answer.topics, max_chars=60)
        rejected += bad
        kept = _without_examples("topics", values, prompts.EXAMPLE_TOPICS, rejected)
        if len(kept) < MIN_TOPICS:
            raise _too_few("topics", wanted, rejected, len(kept))
        return Parsed(kept, rejected)

    messages = prompts.topics(ctx.plan.card, wanted)
    ctx.plan.vocab[TOPIC] = await ctx.essential("topics", messages, 20 * wanted + 60, parse)


async def draft_placeholders(ctx: DraftContext) -> None:
    def parse(content: str) -> Parsed:
        answer = parse_as(content, PlaceholdersAnswer)
        kept: dict[str, str] = {}
        rejected: list[Rejection] = []
        for item in answer.placeholders:
            name = placeholder_name(item.name)
            if not name:
                rejected.append(Rejection("placeholders", item.name, "not a valid id", "no letters"))
            elif name == TOPIC:
                rejected.append(Rejection("placeholders", item.name, "duplicate value", "topic is built in"))
            elif name in kept:
                rejected.append(Rejection("placeholders", item.name, "duplicate value", "given twice"))
            elif len(kept) >= PLACEHOLDER_NAMES:
                rejected.append(Rejection("placeholders", item.name, "beyond the requested count", ""))
            else:
                kept[name] = item.meaning
        if not kept:
            raise _too_few(
                "placeholder names (one lower-case word each, not 'topic')", PLACEHOLDER_NAMES, rejected
            )
        return Parsed(kept, rejected)

    messages = prompts.placeholders(ctx.plan.card, PLACEHOLDER_NAMES)
    ctx.plan.meanings = await ctx.essential("placeholders", messages, 250, parse)


async def draft_vocabulary(ctx: DraftContext) -> None:
    """Each placeholder's values, asked concurrently; a placeholder without values is dropped."""
    wanted = value_count(ctx.spec.template_count)
    names = list(ctx.plan.meanings)
    await ctx.on_progress("vocabulary", 0, len(names))

    def parser(name: str) -> Callable[[str], Parsed]:
        def parse(content: str) -> Parsed:
            answer, rejected = parse_list(content, ValuesAnswer, f"vocabulary/{name}")
            values, bad = clean_values(f"vocabulary/{name}", answer.values, max_chars=60)
            rejected += bad
            kept = _without_examples(f"vocabulary/{name}", values, prompts.EXAMPLE_VALUES, rejected)
            if len(kept) < MIN_VALUES:
                raise _too_few("values", wanted, rejected, len(kept))
            return Parsed(kept, rejected)

        return parse

    async def one(name: str) -> Parsed | None:
        messages = prompts.vocabulary(ctx.plan.card, name, ctx.plan.meanings[name], wanted)
        return await ctx.ask("vocabulary", f"vocabulary/{name}", messages, 20 * wanted + 60, parser(name))

    results = await gather_all([one(name) for name in names])
    for name, parsed in zip(names, results, strict=True):
        if parsed is None:
            ctx.log.notes.append(f"placeholder {{{name}}} dropped: no usable values")
            del ctx.plan.meanings[name]
            continue
        ctx.log.items.extend(parsed.rejected)
        ctx.plan.vocab[name] = parsed.value
    await ctx.on_progress("vocabulary", len(names), len(names))


def _without_examples(
    step: str, values: list[str], examples: Iterable[str], rejected: list[Rejection]
) -> list[str]:
    """``values`` less the prompt's example values (each recorded in ``rejected``)."""
    folded = {e.casefold() for e in examples}
    kept = []
    for value in values:
        if value.casefold() in folded:
            rejected.append(Rejection(step, value, "copied from the example", ""))
        else:
            kept.append(value)
    return kept


def _too_few(what: str, wanted: int, rejected: list[Rejection], usable: int = 0) -> Malformed:
    """The answer had too few usable items: say so, with why the first items were set aside."""
    why = "; ".join(f"{r.item[:60]!r} {r.reason}" for r in rejected[:3])
    return Malformed(
        f"{usable} usable {what}" + (f" ({why})" if why else "") + f"; give {wanted} new, different {what}"
    )
