"""Draft a persona pack with an LLM in small steps, gate it, and publish it atomically.

The steps, each one LLM call (or a few) with a small JSON answer:
persona card → voice (system prompt, catchphrases, fillers) → styles → topics → placeholder
names → each placeholder's vocabulary → answer templates in batches per style → question
templates. Each answer is parsed and validated (``answers.py``) before it is used; a
malformed one is asked again with the problem fed back, ``malformed_retries`` times, then set
aside under ``<draft>/invalid/answers.jsonl`` with the reason. Bad items inside a good
answer go to ``invalid/items.jsonl``. The steps that everything else needs (persona, voice,
styles, topics, questions) stop the draft when they fail; a failed template batch only costs
the batch.

**Resuming.** Every valid answer is cached under ``<home>/drafts/<name>/cache/``, keyed by
the step and the exact prompt (and model and sampling). Prompts are pure functions of the
request and of earlier answers, and template batches run in rounds whose results are
committed in a fixed style order, so a second run replays every answered step from the
cache without a request and asks only what is still missing.

**Publishing.** The pack is written to a build directory inside the draft directory,
loaded with the pack loader (its full validation), checked by ``gates.pack_problems``, and
only then renamed to ``<home>/packs/<name>`` — one ``rename`` on the same file system, so
the packs directory never holds a half-written pack. A report (``report.json``) is written
whether the draft passes or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import openai
import yaml
from talklike.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable
from talklike.common.paths import atomic_write_text
from talklike.generation.dataset import _fsync_tree
from talklike.generation.drafting import prompts
from talklike.generation.drafting.answers import (
    CheckedText,
    Malformed,
    PersonaAnswer,
    PlaceholdersAnswer,
    QuestionsAnswer,
    Rejection,
    StylesAnswer,
    TemplatesAnswer,
    TextRules,
    TopicsAnswer,
    ValuesAnswer,
    VoiceAnswer,
    check_text,
    clean_values,
    parse_as,
    parse_list,
    placeholder_name,
    slug,
)
from talklike.generation.drafting.gates import (
    MAX_TEMPLATES,
    MIN_TEMPLATES,
    TextIndex,
    batch_budget,
    default_style_count,
    pack_problems,
    question_count,
    quotas,
    slip_rules,
    topic_count,
    value_count,
)
from talklike.generation.engine import AnswerGenerator
from talklike.generation.llm import ChatCaller, LlmConfig, ResponseCache
from talklike.generation.packs import (
    BUILTIN_PACKS_DIR,
    LANGUAGE_RE,
    NAME_RE,
    PackInvalid,
    load_pack_dir,
)

T = TypeVar("T")
ProgressCallback = Callable[[str, int, int], Awaitable[None]]

TOPIC = "topic"
MAX_EXAMPLES_BYTES = 64 * 1024
#: Sample answers from ``--examples`` put into prompts: a few short ones steer a small model
#: without drowning its context.
MAX_PROMPT_EXAMPLES = 4
MAX_EXAMPLE_CHARS = 300
MAX_STYLES = 8
MAX_MALFORMED_RETRIES = 10
DEFAULT_MALFORMED_RETRIES = 2
#: A style (or the questions) stops after this many batches in a row that add nothing.
MAX_STALLED_BATCHES = 3
#: Placeholders besides the topic, and the fewest usable items some steps must give.
PLACEHOLDER_NAMES = 3
MIN_TOPICS = 4
MIN_VALUES = 3
#: Templates of the same style shown in a batch prompt as "already written".
SHOWN_WRITTEN = 6
#: Rough tokens per item, for each step's max_tokens (a reply cut short is malformed JSON).
TOKENS_PER_TEMPLATE = 90
TOKENS_PER_QUESTION = 45
STEPS = ("persona", "voice", "styles", "topics", "placeholders", "vocabulary", "templates", "questions")


class DraftFailed(FailedPrecondition):
    """The draft stopped; nothing was written to the packs directory. ``report_path`` says why in full."""

    def __init__(self, message: str, report_path: Path) -> None:
        super().__init__(message)
        self.report_path = report_path


@dataclass(frozen=True)
class DraftSpec:
    """A validated DraftPack request."""

    name: str
    description: str
    template_count: int
    llm: LlmConfig
    examples: tuple[str, ...] = ()
    language: str = ""
    style_count: int = 0
    malformed_retries: int = DEFAULT_MALFORMED_RETRIES
    replace: bool = False
    fresh: bool = False
    satire: bool = False


def split_examples(text: str) -> tuple[str, ...]:
    """Sample answers from an examples file: blank-line separated (or one per line), a few, short."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    if len(blocks) <= 1:
        blocks = [line for line in text.splitlines() if line.strip()]
    out = []
    for block in blocks[:MAX_PROMPT_EXAMPLES]:
        one = " ".join(block.split())
        if len(one) > MAX_EXAMPLE_CHARS:
            one = one[:MAX_EXAMPLE_CHARS].rsplit(" ", 1)[0] + " ..."
        out.append(one)
    return tuple(out)


def build_spec(
    *,
    name: str,
    description: str,
    template_count: int,
    llm: Callable[[], LlmConfig],
    examples: str = "",
    language: str = "",
    style_count: int = 0,
    malformed_retries: int | None = None,
    replace: bool = False,
    fresh: bool = False,
    satire: bool = False,
) -> DraftSpec:
    """A DraftSpec, or InvalidArgument naming the first bad field (``llm`` is checked last)."""
    if not name or not NAME_RE.match(name) or len(name) > 64:
        raise InvalidArgument(
            "name", f"{name!r} is not a pack name (lower-case letters, digits, - and _, at most 64)"
        )
    if not description.strip():
        raise InvalidArgument("description", "say who the persona is, its language and its tone")
    if not MIN_TEMPLATES <= template_count <= MAX_TEMPLATES:
        raise InvalidArgument(
            "template_count",
            f"must be between {MIN_TEMPLATES} and {MAX_TEMPLATES:,}, got {template_count}",
        )
    if len(examples.encode("utf-8")) > MAX_EXAMPLES_BYTES:
        raise InvalidArgument("examples", f"must be at most {MAX_EXAMPLES_BYTES // 1024} KiB of text")
    language = language.strip().lower().replace("_", "-")
    if language and not LANGUAGE_RE.match(language):
        raise InvalidArgument("language", f"{language!r} is not a BCP 47 tag such as en or cs")
    if style_count and not 2 <= style_count <= MAX_STYLES:
        raise InvalidArgument("style_count", f"must be between 2 and {MAX_STYLES} (0 = automatic)")
    retries = DEFAULT_MALFORMED_RETRIES if malformed_retries is None else malformed_retries
    if not 0 <= retries <= MAX_MALFORMED_RETRIES:
        raise InvalidArgument("malformed_retries", f"must be between 0 and {MAX_MALFORMED_RETRIES}")
    return DraftSpec(
        name=name,
        description=description.strip(),
        template_count=template_count,
        llm=llm(),
        examples=split_examples(examples),
        language=language,
        style_count=style_count or default_style_count(template_count),
        malformed_retries=retries,
        replace=replace,
        fresh=fresh,
        satire=satire,
    )


def check_target(home: Path, name: str, replace: bool) -> None:
    """AlreadyExists when the pack name is taken (a built-in one always; a user one without replace)."""
    if (BUILTIN_PACKS_DIR / name).is_dir():
        raise AlreadyExists(f"{name!r} is a built-in pack; choose another name for the draft")
    target = home / "packs" / name
    if target.exists() and not replace:
        raise AlreadyExists(
            f"pack {name!r} already exists in {target.parent}; choose another name or replace it"
        )


@dataclass
class DraftLog:
    """What happened: every step's outcome, answers set aside, items rejected."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    items: list[Rejection] = field(default_factory=list)
    cache_hits: int = 0
    malformed: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class DraftResult:
    """A published draft."""

    name: str
    pack_path: Path
    draft_dir: Path
    report_path: Path
    report: dict[str, Any]
    elapsed_s: float


@dataclass
class _Parsed:
    """A parsed answer and the items it had that were set aside."""

    value: Any
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class _Plan:
    """Everything drafted so far: the pack in memory."""

    card: dict[str, Any] = field(default_factory=dict)
    voice: dict[str, Any] = field(default_factory=dict)
    styles: list[dict[str, str]] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    meanings: dict[str, str] = field(default_factory=dict)
    templates: dict[str, list[CheckedText]] = field(default_factory=dict)
    questions: list[CheckedText] = field(default_factory=list)
    style_calls: Counter[str] = field(default_factory=Counter)
    quota: dict[str, int] = field(default_factory=dict)


async def _no_progress(stage: str, done: int, total: int) -> None:
    return None


class Drafter:
    """One draft run; ``run()`` returns the published pack or raises (DraftFailed, Unavailable...)."""

    def __init__(self, spec: DraftSpec, home: Path, on_progress: ProgressCallback = _no_progress) -> None:
        self.spec = spec
        self.home = home
        self.on_progress = on_progress
        self.draft_dir = home / "drafts" / spec.name
        self.cache = ResponseCache(self.draft_dir / "cache")
        self.log = DraftLog()
        self.plan = _Plan()
        self._caller = ChatCaller(spec.llm)
        self._gate = asyncio.Semaphore(max(1, spec.llm.concurrency))
        self._client: openai.AsyncOpenAI | None = None
        self._templates_index = TextIndex()
        self._questions_index = TextIndex()
        self._started = time.monotonic()
        self._samples: list[str] = []
        self._last_report: dict[str, Any] = {}

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> DraftResult:
        """Draft, gate, publish; the report is written in every case."""
        spec = self.spec
        check_target(self.home, spec.name, spec.replace)
        self.draft_dir.mkdir(parents=True, exist_ok=True)
        if spec.fresh:
            shutil.rmtree(self.draft_dir / "cache", ignore_errors=True)
        self._client = self._caller.open_client()
        try:
            await self._persona()
            await self._voice()
            await self._styles()
            await self._topics()
            await self._placeholders()
            await self._vocabulary()
            await self._templates()
            await self._questions()
            pack_path = await self._publish()
        except DraftFailed:
            raise
        except (Unavailable, FailedPrecondition) as error:
            if type(error) not in (Unavailable, FailedPrecondition):
                self._write_report("failed", error.message, None)
                raise
            report_file = self._write_report("failed", error.message, None)
            raise type(error)(
                f"{error.message}. {self._tally()}; nothing was written to the packs directory. "
                f"Check that {spec.llm.base_url} serves the OpenAI chat-completions API (the URL "
                f"usually ends in /v1) and that model {spec.llm.model!r} is served there; the "
                f"report is {report_file}, and the same command resumes from the answers cached so far"
            ) from error
        except BaseException as error:
            self._write_report("failed", f"{type(error).__name__}: {error}", None)
            raise
        finally:
            await self._client.close()
        return DraftResult(
            spec.name,
            pack_path,
            self.draft_dir,
            self.draft_dir / "report.json",
            self._last_report,
            time.monotonic() - self._started,
        )

    def _tally(self) -> str:
        stats = self._caller.stats
        return (
            f"{stats.requests} requests ({self.log.cache_hits} answers from the cache), "
            f"{self.log.malformed} malformed answers, {len(self.log.items)} items rejected"
        )

    def _fail(self, problem: str) -> DraftFailed:
        report = self._write_report("failed", problem, None)
        return DraftFailed(
            f"drafting {self.spec.name!r} stopped: {problem}. {self._tally()}; nothing was written to "
            f"the packs directory. Report: {report}. Try a stronger model or a simpler description; "
            "running the same command again resumes from the answers cached so far",
            report,
        )

    # --- one step's question ----------------------------------------------------------------

    async def _ask(
        self,
        step: str,
        label: str,
        messages: list[dict[str, str]],
        max_tokens: int,
        parse: Callable[[str], _Parsed],
    ) -> _Parsed | None:
        """A validated answer for ``messages``, from the cache or the LLM; None when every
        attempt was malformed (each is set aside with its reason)."""
        llm = self.spec.llm
        # The label (step and batch) is part of the key: two batches may send the same prompt
        # (a failed batch leaves the next one's prompt unchanged), and each keeps its own answer.
        params = {
            "step": label,
            "temperature": llm.temperature,
            "max_tokens": min(max_tokens, llm.max_tokens),
        }
        key = ResponseCache.key(llm.model, messages, params)
        cached = self.cache.get(key)
        if cached is not None:
            try:
                parsed = parse(cached)
            except Malformed:
                pass  # cached under an older validation: ask again
            else:
                self.log.cache_hits += 1
                self.log.steps.append({"step": label, "source": "cache", "attempts": 0, "ok": True})
                return parsed
        assert self._client is not None
        conversation = list(messages)
        problem = ""
        for attempt in range(1, self.spec.malformed_retries + 2):
            async with self._gate:
                content = await self._caller.complete(self._client, conversation, params)
            try:
                parsed = parse(content)
            except Malformed as error:
                problem = error.reason
                self.log.malformed += 1
                self.log.answers.append(
                    {"step": label, "attempt": attempt, "reason": problem, "reply": content}
                )
                conversation = [
                    *messages,
                    {"role": "assistant", "content": content[:4000]},
                    {"role": "user", "content": prompts.feedback(problem)},
                ]
                continue
            self.cache.put(key, llm.model, messages, params, content)
            self.log.steps.append({"step": label, "source": "llm", "attempts": attempt, "ok": True})
            return parsed
        self.log.steps.append(
            {
                "step": label,
                "source": "llm",
                "attempts": self.spec.malformed_retries + 1,
                "ok": False,
                "problem": problem,
            }
        )
        return None

    async def _essential(
        self, step: str, messages: list[dict[str, str]], max_tokens: int, parse: Callable[[str], _Parsed]
    ) -> Any:
        """A step the rest depends on: its answer, or DraftFailed after the retry budget."""
        await self.on_progress(step, 0, 1)
        parsed = await self._ask(step, step, messages, max_tokens, parse)
        if parsed is None:
            last = self.log.steps[-1].get("problem", "")
            raise self._fail(
                f"the LLM at {self.spec.llm.base_url} gave no usable {step} answer in "
                f"{self.spec.malformed_retries + 1} attempts (last problem: {last})"
            )
        self.log.items.extend(parsed.rejected)
        await self.on_progress(step, 1, 1)
        return parsed.value

    # --- the steps ---------------------------------------------------------------------------

    async def _persona(self) -> None:
        spec = self.spec

        def parse(content: str) -> _Parsed:
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
            return _Parsed(card)

        messages = prompts.persona(spec.description, spec.language, spec.examples)
        self.plan.card = await self._essential("persona", messages, 300, parse)

    async def _voice(self) -> None:
        card = self.plan.card

        def parse(content: str) -> _Parsed:
            answer = parse_as(content, VoiceAnswer)
            if answer.system_prompt == prompts.EXAMPLE_VOICE["system_prompt"]:
                raise Malformed("that is the example's system prompt; write one for this persona")
            phrases, rejected = clean_values("voice", answer.catchphrases, max_chars=80)
            if not phrases:
                raise Malformed("catchphrases has no usable phrase (short, one line, no braces)")
            fillers, bad_fillers = clean_values("voice", answer.fillers, max_chars=24)
            prompt_text = " ".join(answer.system_prompt.split())
            return _Parsed(
                {"system_prompt": prompt_text, "catchphrases": phrases, "fillers": fillers},
                rejected + bad_fillers,
            )

        messages = prompts.voice(card, self.spec.examples)
        self.plan.voice = await self._essential("voice", messages, 400, parse)

    async def _styles(self) -> None:
        wanted = self.spec.style_count
        example_ids = {s["id"] for s in prompts.EXAMPLE_STYLES}

        def parse(content: str) -> _Parsed:
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
                    rejected.append(
                        Rejection("styles", shown, "copied from the example", "not this persona's")
                    )
                elif any(s["id"] == style_id for s in kept):
                    rejected.append(Rejection("styles", shown, "duplicate value", f"id {style_id!r} twice"))
                elif len(kept) >= wanted:
                    rejected.append(Rejection("styles", shown, "beyond the requested count", ""))
                else:
                    kept.append({"id": style_id, "name": item.name, "description": item.description})
            if not kept:
                raise _too_few("styles", wanted, rejected)
            return _Parsed(kept, rejected)

        messages = prompts.styles(self.plan.card, wanted, self.spec.examples)
        self.plan.styles = await self._essential("styles", messages, 120 * wanted + 80, parse)
        if len(self.plan.styles) < wanted:
            self.log.notes.append(f"{len(self.plan.styles)} styles of {wanted} asked for")

    async def _topics(self) -> None:
        wanted = topic_count(self.spec.template_count)

        def parse(content: str) -> _Parsed:
            answer, rejected = parse_list(content, TopicsAnswer, "topics")
            values, bad = clean_values("topics", answer.topics, max_chars=60)
            rejected += bad
            kept = _without_examples("topics", values, prompts.EXAMPLE_TOPICS, rejected)
            if len(kept) < MIN_TOPICS:
                raise _too_few("topics", wanted, rejected, len(kept))
            return _Parsed(kept, rejected)

        messages = prompts.topics(self.plan.card, wanted)
        self.plan.vocab[TOPIC] = await self._essential("topics", messages, 20 * wanted + 60, parse)

    async def _placeholders(self) -> None:
        def parse(content: str) -> _Parsed:
            answer = parse_as(content, PlaceholdersAnswer)
            kept: dict[str, str] = {}
            rejected: list[Rejection] = []
            for item in answer.placeholders:
                name = placeholder_name(item.name)
                if not name:
                    rejected.append(Rejection("placeholders", item.name, "not a valid id", "no letters"))
                elif name == TOPIC:
                    rejected.append(
                        Rejection("placeholders", item.name, "duplicate value", "topic is built in")
                    )
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
            return _Parsed(kept, rejected)

        messages = prompts.placeholders(self.plan.card, PLACEHOLDER_NAMES)
        self.plan.meanings = await self._essential("placeholders", messages, 250, parse)

    async def _vocabulary(self) -> None:
        """Each placeholder's values, asked concurrently; a placeholder without values is dropped."""
        wanted = value_count(self.spec.template_count)
        names = list(self.plan.meanings)
        await self.on_progress("vocabulary", 0, len(names))

        def parser(name: str) -> Callable[[str], _Parsed]:
            def parse(content: str) -> _Parsed:
                answer, rejected = parse_list(content, ValuesAnswer, f"vocabulary/{name}")
                values, bad = clean_values(f"vocabulary/{name}", answer.values, max_chars=60)
                rejected += bad
                kept = _without_examples(f"vocabulary/{name}", values, prompts.EXAMPLE_VALUES, rejected)
                if len(kept) < MIN_VALUES:
                    raise _too_few("values", wanted, rejected, len(kept))
                return _Parsed(kept, rejected)

            return parse

        async def one(name: str) -> _Parsed | None:
            messages = prompts.vocabulary(self.plan.card, name, self.plan.meanings[name], wanted)
            return await self._ask(
                "vocabulary", f"vocabulary/{name}", messages, 20 * wanted + 60, parser(name)
            )

        results = await _all([one(name) for name in names])
        for name, parsed in zip(names, results, strict=True):
            if parsed is None:
                self.log.notes.append(f"placeholder {{{name}}} dropped: no usable values")
                del self.plan.meanings[name]
                continue
            self.log.items.extend(parsed.rejected)
            self.plan.vocab[name] = parsed.value
        await self.on_progress("vocabulary", len(names), len(names))

    def _rules(self, step: str, *, template: bool) -> TextRules:
        examples = (
            prompts.example_template(TOPIC, [n for n in self.plan.vocab if n != TOPIC])
            if template
            else prompts.example_questions(TOPIC)
        )
        return TextRules(
            step=step,
            placeholders={k: tuple(v) for k, v in self.plan.vocab.items()},
            topic_name=TOPIC,
            signature=self.plan.card["signature"],
            require_placeholder=template,
            require_topic=template,
            min_chars=15 if template else 8,
            max_chars=400 if template else 300,
            example_texts=frozenset(" ".join(e.casefold().split()) for e in examples),
        )

    def _text_parser(
        self, answer_type: type[TemplatesAnswer] | type[QuestionsAnswer], rules: TextRules, index: TextIndex
    ) -> Callable[[str], _Parsed]:
        """Parse a batch of texts: kept ones are new against ``index`` and each other (nothing is
        added to ``index`` here: the caller commits, in a fixed order)."""

        def parse(content: str) -> _Parsed:
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
            return _Parsed(kept, rejected)

        return parse

    def _commit(
        self, step: str, parsed: _Parsed, index: TextIndex, room: int, label: Callable[[int], str]
    ) -> list[CheckedText]:
        """Add a parsed batch to ``index`` (at most ``room`` items); the rest is recorded as rejected."""
        self.log.items.extend(parsed.rejected)
        added: list[CheckedText] = []
        for checked in parsed.value:
            why = index.reason(checked.text)
            if why:
                self.log.items.append(_duplicate(step, checked.text, why))
            elif len(added) >= room:
                self.log.items.append(Rejection(step, checked.text, "beyond the requested count", ""))
            else:
                index.add(checked.text, label(len(index) + 1))
                added.append(checked)
        return added

    async def _templates(self) -> None:
        """Template batches in rounds: one batch per unfinished style at a time, committed in style order."""
        spec = self.spec
        style_ids = [s["id"] for s in self.plan.styles]
        quota = self.plan.quota = quotas(spec.template_count, style_ids)
        per_call = max(1, spec.llm.batch_size)
        budget = {s: batch_budget(quota[s], per_call) for s in style_ids}
        stalled = dict.fromkeys(style_ids, 0)
        kept: dict[str, list[CheckedText]] = {s: [] for s in style_ids}
        by_id = {s["id"]: s for s in self.plan.styles}
        rules = {s: self._rules(f"templates/{s}", template=True) for s in style_ids}
        await self.on_progress("templates", 0, spec.template_count)

        def open_(style: str) -> bool:
            return (
                len(kept[style]) < quota[style]
                and self.plan.style_calls[style] < budget[style]
                and stalled[style] < MAX_STALLED_BATCHES
            )

        while active := [s for s in style_ids if open_(s)]:
            batches = []
            for style in active:
                self.plan.style_calls[style] += 1
                count = min(per_call, quota[style] - len(kept[style]))
                written = [c.text for c in kept[style][-SHOWN_WRITTEN:]]
                messages = prompts.templates(
                    self.plan.card,
                    by_id[style],
                    self.plan.vocab,
                    self.plan.meanings,
                    TOPIC,
                    count,
                    written,
                    spec.examples,
                )
                parse = self._text_parser(TemplatesAnswer, rules[style], self._templates_index)
                label = f"templates/{style}#{self.plan.style_calls[style]}"
                batches.append(
                    self._ask("templates", label, messages, TOKENS_PER_TEMPLATE * count + 60, parse)
                )
            results = await _all(batches)
            for style, parsed in zip(active, results, strict=True):
                added: list[CheckedText] = []
                if parsed is not None:
                    room = quota[style] - len(kept[style])
                    added = self._commit(
                        f"templates/{style}", parsed, self._templates_index, room, lambda n: f"template {n}"
                    )
                    kept[style].extend(added)
                stalled[style] = 0 if added else stalled[style] + 1
            await self.on_progress("templates", sum(len(v) for v in kept.values()), spec.template_count)
        self.plan.templates = kept
        for style in style_ids:
            if len(kept[style]) < quota[style]:
                why = "stalled" if stalled[style] >= MAX_STALLED_BATCHES else "out of calls"
                self.log.notes.append(
                    f"style {style}: {len(kept[style])} of {quota[style]} templates ({why} after "
                    f"{self.plan.style_calls[style]} calls)"
                )
        # A style without templates cannot be mixed in: drop it while others have some.
        empty = [s for s in style_ids if not kept[s]]
        if len(empty) < len(style_ids):
            for style in empty:
                self.log.notes.append(f"style {style} dropped: no usable templates")
                del kept[style]
            self.plan.styles = [s for s in self.plan.styles if s["id"] in kept]
        total = sum(len(v) for v in kept.values())
        if total < MIN_TEMPLATES:
            failed = [s for s in self.log.steps if s["step"].startswith("templates/") and not s["ok"]]
            last = f" (last problem: {failed[-1]['problem']})" if failed else ""
            raise self._fail(
                f"the LLM at {self.spec.llm.base_url} gave {total} usable templates of the "
                f"{spec.template_count} asked for in {sum(self.plan.style_calls.values())} batches; a pack "
                f"needs at least {MIN_TEMPLATES}{last}"
            )

    async def _questions(self) -> None:
        wanted = question_count(self.spec.template_count)
        per_call = max(1, self.spec.llm.batch_size)
        budget = batch_budget(wanted, per_call)
        rules = self._rules("questions", template=False)
        kept: list[CheckedText] = []
        calls = stalled = 0
        await self.on_progress("questions", 0, wanted)
        while len(kept) < wanted and calls < budget and stalled < MAX_STALLED_BATCHES:
            calls += 1
            count = min(per_call, wanted - len(kept))
            written = [c.text for c in kept[-SHOWN_WRITTEN:]]
            messages = prompts.questions(
                self.plan.card, self.plan.vocab, self.plan.meanings, TOPIC, count, written
            )
            parse = self._text_parser(QuestionsAnswer, rules, self._questions_index)
            parsed = await self._ask(
                "questions", f"questions#{calls}", messages, TOKENS_PER_QUESTION * count + 60, parse
            )
            added: list[CheckedText] = []
            if parsed is not None:
                added = self._commit(
                    "questions",
                    parsed,
                    self._questions_index,
                    wanted - len(kept),
                    lambda n: f"question {n}",
                )
                kept.extend(added)
            stalled = 0 if added else stalled + 1
            await self.on_progress("questions", len(kept), wanted)
        if not any(q.topic == "*" for q in kept):
            raise self._fail(
                f"the LLM at {self.spec.llm.base_url} gave no usable question with {{{TOPIC}}} "
                f"in {calls} calls (every style needs one)"
            )
        if len(kept) < wanted:
            self.log.notes.append(f"{len(kept)} questions of {wanted} asked for")
        self.plan.questions = kept

    # --- the pack ------------------------------------------------------------------------------

    def pack_files(self) -> dict[str, str]:
        """The pack's files (relative path → YAML text) from the plan."""
        plan, spec = self.plan, self.spec
        header = (
            f"# Drafted by `talklike packs draft` with {spec.llm.model} at {spec.llm.base_url}.\n"
            "# Review it (`talklike packs show NAME --sample 10`) before training on it.\n"
        )
        persona = {
            "name": spec.name,
            "display_name": plan.card["display_name"],
            "language": plan.card["language"],
            "signature": plan.card["signature"],
            "satire": plan.card["satire"],
            "description": plan.card["description"],
            "system_prompt": plan.voice["system_prompt"],
            "topic_placeholder": TOPIC,
            "catchphrases": plan.voice["catchphrases"],
        }
        files = {
            "persona.yaml": header + _yaml(persona),
            "styles.yaml": _yaml({"styles": plan.styles}),
            "placeholders.yaml": _yaml({"placeholders": plan.vocab}),
            "slips.yaml": _yaml({"slips": slip_rules(plan.voice["fillers"])}),
            "questions.yaml": _yaml(
                {
                    "questions": [
                        {"id": f"q-{n:03d}", "topic": q.topic, "styles": ["*"], "text": q.text}
                        for n, q in enumerate(plan.questions, start=1)
                    ]
                }
            ),
        }
        for style in plan.styles:
            rows = [
                {"id": f"{style['id']}-{n:03d}", "style": style["id"], "topic": t.topic, "text": t.text}
                for n, t in enumerate(plan.templates.get(style["id"], []), start=1)
            ]
            files[f"templates/{style['id']}.yaml"] = _yaml({"templates": rows})
        return files

    async def _publish(self) -> Path:
        """Write the pack beside the packs directory, load and gate it, then rename it into place."""
        spec = self.spec
        await self.on_progress("check", 0, 1)
        build_root = Path(tempfile.mkdtemp(prefix=".build-", dir=self.draft_dir))
        try:
            build = build_root / spec.name
            for relative, text in self.pack_files().items():
                target = build / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            try:
                pack = load_pack_dir(build, "user")
            except PackInvalid as error:
                raise self._fail(
                    "the draft fails the pack loader's checks: "
                    + "; ".join(str(p) for p in error.problems[:10])
                ) from error
            problems = pack_problems(pack, spec.template_count)
            if problems:
                raise self._fail("the draft fails the quality gates: " + "; ".join(problems[:10]))
            self._samples = [a.text for a in AnswerGenerator(pack, 0, slip_probability=0).generate(3)]
            await self.on_progress("check", 1, 1)
            await self.on_progress("write", 0, 1)
            _fsync_tree(build)
            target = self.home / "packs" / spec.name
            _move_into_place(build, target, build_root, spec.replace)
        finally:
            shutil.rmtree(build_root, ignore_errors=True)
        self._write_report("written", "", target)
        await self.on_progress("write", 1, 1)
        return target

    # --- the report ----------------------------------------------------------------------------

    def _report(self, status: str, problem: str, pack_path: Path | None) -> dict[str, Any]:
        spec, plan, log = self.spec, self.plan, self.log
        stats = self._caller.stats
        accepted = sum(len(v) for v in plan.templates.values())
        reasons = Counter(r.category for r in log.items)
        return {
            "name": spec.name,
            "status": status,
            "problem": problem,
            "pack_path": str(pack_path) if pack_path else None,
            "draft_dir": str(self.draft_dir),
            "llm": {
                "base_url": spec.llm.base_url,
                "model": spec.llm.model,
                "temperature": spec.llm.temperature,
                "items_per_call": spec.llm.batch_size,
                "malformed_retries": spec.malformed_retries,
            },
            "requested_templates": spec.template_count,
            "templates": accepted,
            "shortfall": max(0, spec.template_count - accepted) if status == "written" else None,
            "styles": {
                s["id"]: {
                    "name": s["name"],
                    "requested": plan.quota.get(s["id"], 0),
                    "templates": len(plan.templates.get(s["id"], [])),
                    "calls": plan.style_calls.get(s["id"], 0),
                }
                for s in plan.styles
            },
            "questions": len(plan.questions),
            "placeholders": {name: len(values) for name, values in plan.vocab.items()},
            "calls": {
                "requests": stats.requests,
                "transport_retries": stats.retries,
                "cache_hits": log.cache_hits,
                "malformed_answers": log.malformed,
                "steps_failed": sum(1 for s in log.steps if not s["ok"]),
                "steps": len(log.steps),
            },
            "rejected": {"count": len(log.items), "by_reason": dict(reasons.most_common())},
            "notes": log.notes,
            "samples": self._samples,
            "elapsed_s": round(time.monotonic() - self._started, 3),
            "steps": log.steps,
        }

    def _write_report(self, status: str, problem: str, pack_path: Path | None) -> Path:
        """report.json and invalid/ in the draft directory; returns the report's path."""
        report = self._last_report = self._report(status, problem, pack_path)
        self.draft_dir.mkdir(parents=True, exist_ok=True)
        answers = sorted(self.log.answers, key=lambda a: (_step_order(a["step"]), a["step"], a["attempt"]))
        atomic_write_text(self.draft_dir / "invalid" / "answers.jsonl", _jsonl(answers))
        atomic_write_text(
            self.draft_dir / "invalid" / "items.jsonl",
            _jsonl(
                {"step": r.step, "item": r.item, "category": r.category, "reason": r.reason}
                for r in self.log.items
            ),
        )
        path = self.draft_dir / "report.json"
        atomic_write_text(path, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        return path


async def _all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Await all of them concurrently; on the first error cancel the rest (so no request outlives
    a failed draft) and raise that error as it is."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
        if failed is not None:
            raise cast(BaseException, failed.exception())
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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


def _duplicate(step: str, text: str, why: str) -> Rejection:
    category = "exact duplicate" if why.startswith("exact") else "near duplicate"
    return Rejection(step, text, category, why)


def _step_order(label: str) -> int:
    base = label.split("/")[0].split("#")[0]
    return STEPS.index(base) if base in STEPS else len(STEPS)


def _yaml(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), allow_unicode=True, sort_keys=False, width=1000)


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)


def _move_into_place(build: Path, target: Path, scratch: Path, replace: bool) -> None:
    """Rename ``build`` to ``target``; an existing pack (``replace``) moves into ``scratch`` first.

    The old pack leaves the packs directory (to ``scratch``, on the same file system) instead
    of to a temporary name beside it, so listing packs never shows a half-moved one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old: Path | None = None
    if target.exists():
        if not replace:
            raise AlreadyExists(f"pack {target.name!r} appeared in {target.parent} while drafting")
        old = scratch / "replaced"
        os.rename(target, old)
    try:
        os.rename(build, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
