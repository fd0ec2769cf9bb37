"""What each drafting step's answer must look like, and the checks of the items in it.

An LLM's answer goes through three filters before anything in it is used:

1. **JSON**: the first JSON value in the reply (models wrap it in prose or code fences);
2. **shape**: a pydantic model per step. Shapes are lenient where the meaning is plain — a
   bare list for a one-list answer, the list under another key, a number where a string was
   asked — because small models do that and the content is still good;
3. **items**: every template, question or vocabulary value is checked on its own; a bad item
   is set aside with its reason (it never fails the answer it came in), and placeholder
   spellings that are unambiguous (``{{topic}}``, ``{Topic}``, ``[topic]``) are repaired first.

A reply that fails 1 or 2, or leaves nothing usable after 3, is *malformed*: the drafter asks
again with the problem fed back (see ``drafter.py``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from talklike.packs.loader import PLACEHOLDER_NAME_RE, PLACEHOLDER_RE

#: How far into a reply the JSON may start (a reply is prose + JSON at worst).
MAX_JSON_STARTS = 20
#: Placeholder spellings small models use instead of ``{name}``.
_DOUBLE_BRACES = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LOOSE_BRACES = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_BRACKETS = re.compile(r"[\[<]\s*([A-Za-z_][A-Za-z0-9_]*)\s*[\]>]")


AnswerT = TypeVar("AnswerT", bound=BaseModel)
ListAnswerT = TypeVar("ListAnswerT", bound="ListAnswer")


class Malformed(ValueError):
    """The answer as a whole cannot be used; ``reason`` is fed back to the model."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Rejection:
    """One item set aside: which step, the item as the model wrote it, and why."""

    step: str
    item: str
    category: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.detail}" if self.detail else self.category


def _brackets(text: str) -> tuple[list[tuple[int, str]], bool]:
    """The brackets of ``text`` outside JSON strings, with their positions, and whether the text
    ends inside a string."""
    found: list[tuple[int, str]] = []
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[]}":
            found.append((i, ch))
    return found, in_string


def _span_end(text: str, start: int) -> int:
    """Where the bracketed value opening at ``start`` closes, or the end of ``text``."""
    depth = 0
    for i, ch in _brackets(text[start:])[0]:
        depth += 1 if ch in "{[" else -1
        if depth == 0:
            return start + i + 1
    return len(text)


def extract_json(content: str) -> Any:
    """The first complete JSON object or array in ``content``; Malformed says why there is none.

    A value that fails to parse is skipped as a whole (to where its brackets close): an inner
    object of a broken list is not taken for the answer, whose error is reported instead.
    """
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(content) if ch in "{["]
    if not starts:
        shown = " ".join(content.split())[:80]
        raise Malformed(f"the answer is not JSON (it has no {{ or [): {shown!r}")
    first_error = ""
    position = starts[0]
    for _ in range(MAX_JSON_STARTS):
        try:
            value, _end = decoder.raw_decode(content, position)
        except json.JSONDecodeError as error:
            first_error = first_error or f"{error.msg} at character {error.pos - position}"
            after = _span_end(content, position)
            position = next((i for i in starts if i >= after), -1)
            if position < 0:
                break
            continue
        return value
    raise Malformed(f"the answer is not valid JSON ({first_error})")


def _closers(head: str) -> str | None:
    """The brackets that close what ``head`` left open; None when it ends inside a string."""
    found, in_string = _brackets(head)
    if in_string:
        return None
    stack: list[str] = []
    for _i, ch in found:
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif stack:
            stack.pop()
    return "".join(reversed(stack))


#: Tries at cutting a truncated answer back to a complete item.
MAX_SALVAGE_CUTS = 30


def salvage_truncated(content: str) -> tuple[Any, str] | None:
    """A list answer cut off mid-item (the reply ran out of tokens), closed after its last
    complete string item: (value, the cut-off rest), or None when no cut parses.

    Small models often start repeating themselves until ``max_tokens`` ends the reply; the
    items written before that are as good as in a complete answer.
    """
    starts = [i for i, ch in enumerate(content) if ch in "{["]
    if not starts:
        return None
    text = content[starts[0] :]
    cuts = [m.start() + 1 for m in re.finditer(r'"\s*,', text)][-MAX_SALVAGE_CUTS:]
    for cut in reversed(cuts):
        head = text[:cut]
        closers = _closers(head)
        if closers is None:
            continue
        try:
            return json.loads(head + closers), text[cut:].lstrip(" ,\n")
        except ValueError:
            continue
    return None


def parse_list(content: str, model: type[ListAnswerT], step: str) -> tuple[ListAnswerT, list[Rejection]]:
    """``content`` as a one-list answer; a reply cut off mid-list keeps its complete items, and
    the cut-off rest is returned as a rejection."""
    try:
        return parse_as(content, model), []
    except Malformed as error:
        saved = salvage_truncated(content)
        if saved is None:
            raise
        value, rest = saved
        try:
            answer = model.model_validate(value)
        except ValidationError:
            raise error from None
        shown = " ".join(rest.split())[:200]
        return answer, [
            Rejection(step, shown, "cut off", "the reply ended mid-item; the complete items were kept")
        ]


def describe_validation(error: ValidationError, limit: int = 3) -> str:
    """A pydantic error as one short sentence for the model: ``field: problem; ...``."""
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "the answer"
        parts.append(f"{where}: {item['msg']}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_as(content: str, model: type[AnswerT]) -> AnswerT:
    """``content`` as ``model``; Malformed with the reason when it is not."""
    value = extract_json(content)
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise Malformed(describe_validation(error)) from error


class StepAnswer(BaseModel):
    """Base of the answers: unknown keys are ignored, strings are stripped."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)


class ListAnswer(StepAnswer):
    """An answer that is one list under one key (``KEY``).

    A bare list is taken as that list, and an object whose only list sits under another key
    (``{"answers": [...]}`` for ``templates``) is read the same way.
    """

    KEY: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _one_list(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {cls.KEY: data}
        if isinstance(data, dict) and cls.KEY not in data:
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) == 1:
                return {**data, cls.KEY: lists[0]}
        return data


class PersonaAnswer(StepAnswer):
    """Step ``persona``: who the persona is."""

    display_name: str = Field(min_length=2, max_length=80)
    language: str = Field(default="", max_length=35)
    signature: str = Field(default="", max_length=80)
    description: str = Field(min_length=10, max_length=1500)

    @field_validator("display_name", "signature")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value:
            raise ValueError("must be one line")
        return value

    @field_validator("language")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower().replace("_", "-")


class VoiceAnswer(StepAnswer):
    """Step ``voice``: the system prompt of every example, catchphrases and hesitation fillers."""

    system_prompt: str = Field(min_length=20, max_length=3000)
    catchphrases: list[Any] = Field(min_length=1, max_length=30)
    fillers: list[Any] = Field(default_factory=list, max_length=30)


class StyleItem(StepAnswer):
    """One style: an id (made from the name when missing), a name and what it is."""

    id: str = ""
    name: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=3, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str) and ":" in data:  # "Angry: shouts about everything"
            name, _, description = data.partition(":")
            return {"name": name, "description": description}
        return data


class StylesAnswer(ListAnswer):
    """Step ``styles``."""

    KEY: ClassVar[str] = "styles"
    styles: list[StyleItem] = Field(min_length=1, max_length=20)


class TopicsAnswer(ListAnswer):
    """Step ``topics``: what journalists ask about (the values of ``{topic}``)."""

    KEY: ClassVar[str] = "topics"
    topics: list[Any] = Field(min_length=1, max_length=200)


class PlaceholderItem(StepAnswer):
    """One placeholder the templates may use, and what its values are."""

    name: str = Field(min_length=1, max_length=40)
    meaning: str = Field(default="", max_length=300)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            name, _, meaning = data.partition(":")
            return {"name": name, "meaning": meaning}
        return data


class PlaceholdersAnswer(ListAnswer):
    """Step ``placeholders``: names besides ``topic``."""

    KEY: ClassVar[str] = "placeholders"
    placeholders: list[PlaceholderItem] = Field(min_length=1, max_length=20)


class ValuesAnswer(ListAnswer):
    """Step ``vocabulary``: the values of one placeholder."""

    KEY: ClassVar[str] = "values"
    values: list[Any] = Field(min_length=1, max_length=200)


class TemplatesAnswer(ListAnswer):
    """Step ``templates``: answer templates of one style."""

    KEY: ClassVar[str] = "templates"
    templates: list[Any] = Field(min_length=1, max_length=200)


class QuestionsAnswer(ListAnswer):
    """Step ``questions``: journalist question templates."""

    KEY: ClassVar[str] = "questions"
    questions: list[Any] = Field(min_length=1, max_length=200)


def slug(text: str, joiner: str = "-") -> str:
    """``text`` as an id: ASCII letters and digits, lower case, words joined by ``joiner``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    out = joiner.join(words)[:40].strip(joiner)
    return out if out and out[0].isalpha() else (f"s{joiner}{out}" if out else "")


def item_text(item: Any) -> str | None:
    """The text of one list item: a string, a number, or ``{"text": ...}``; None otherwise."""
    if isinstance(item, dict):
        item = item.get("text", item.get("template", item.get("question")))
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int | float | str):
        return " ".join(str(item).split())
    return None


def clean_values(
    step: str, items: Iterable[Any], *, max_chars: int, taken: Iterable[str] = ()
) -> tuple[list[str], list[Rejection]]:
    """Distinct, one-line, brace-free short strings of ``items`` and the rejected ones.

    ``taken`` holds values already kept elsewhere (compared without case).
    """
    kept: list[str] = []
    rejected: list[Rejection] = []
    seen = {v.casefold() for v in taken}
    for item in items:
        text = item_text(item)
        raw = text if text is not None else json.dumps(item, ensure_ascii=False)[:200]
        if not text:
            rejected.append(Rejection(step, raw, "not text", "an empty item or not a string"))
        elif len(text) > max_chars:
            rejected.append(Rejection(step, text, "too long", f"more than {max_chars} characters"))
        elif "{" in text or "}" in text:
            rejected.append(Rejection(step, text, "stray brace", "values cannot contain { or }"))
        elif text.casefold() in seen:
            rejected.append(Rejection(step, text, "duplicate value", "given twice"))
        else:
            seen.add(text.casefold())
            kept.append(text.strip(" .;"))
    return kept, rejected


def repair_placeholders(text: str, known: Iterable[str]) -> str:
    """Unambiguous misspellings of known placeholders written as ``{name}``.

    ``{{topic}}``, ``{ topic }``, ``{Topic}``, ``[topic]`` and ``<topic>`` become ``{topic}``
    when ``topic`` is a known name; anything else is left for the checks to refuse.
    """
    by_fold = {name.casefold(): name for name in known}

    def known_name(match: re.Match[str]) -> str:
        name = by_fold.get(match.group(1).casefold())
        return f"{{{name}}}" if name is not None else match.group(0)

    text = _DOUBLE_BRACES.sub(known_name, text)
    text = _LOOSE_BRACES.sub(known_name, text)
    return _BRACKETS.sub(known_name, text)


@dataclass(frozen=True)
class TextRules:
    """What an answer template or a question template must satisfy."""

    step: str
    placeholders: Mapping[str, tuple[str, ...]]
    topic_name: str
    signature: str
    #: Answer templates must use a placeholder; questions need not.
    require_placeholder: bool
    #: Answer templates must be about a topic: ``{topic}`` or one topic value named literally.
    require_topic: bool
    min_chars: int
    max_chars: int
    #: Folded texts of the prompt's own examples (a copy of them is no answer).
    example_texts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CheckedText:
    """A text that passed ``check_text``: the text and its topic (``*`` or a topic value)."""

    text: str
    topic: str


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def check_text(item: Any, rules: TextRules) -> CheckedText | Rejection:
    """One template or question, repaired where unambiguous, or the reason it is set aside."""
    text = item_text(item)
    step = rules.step
    if not text:
        return Rejection(
            step, json.dumps(item, ensure_ascii=False)[:200], "not text", "empty or not a string"
        )
    text = repair_placeholders(text, rules.placeholders)
    if len(text) < rules.min_chars:
        return Rejection(step, text, "too short", f"fewer than {rules.min_chars} characters")
    if len(text) > rules.max_chars:
        return Rejection(step, text, "too long", f"more than {rules.max_chars} characters")
    if _fold(text) in rules.example_texts:
        return Rejection(step, text, "copied from the example", "the prompt's example, not a new text")
    names = list(dict.fromkeys(PLACEHOLDER_RE.findall(text)))
    unknown = [n for n in names if n not in rules.placeholders]
    if unknown:
        shown = ", ".join(f"{{{n}}}" for n in unknown)
        return Rejection(step, text, "unknown placeholder", f"{shown} is not one of the placeholders")
    bare = PLACEHOLDER_RE.sub("", text)
    if "{" in bare or "}" in bare:
        return Rejection(step, text, "stray brace", "braces are only for {placeholder} names")
    if rules.signature and rules.signature.casefold() in text.casefold():
        return Rejection(
            step, text, "contains the signature", f"{rules.signature!r} is appended by the generator"
        )
    if rules.require_placeholder and not names:
        return Rejection(step, text, "no placeholder", "an answer template needs at least one {placeholder}")
    topic = "*"
    if rules.topic_name not in names:
        folded = text.casefold()
        named = [t for t in rules.placeholders.get(rules.topic_name, ()) if t.casefold() in folded]
        if named:
            topic = max(named, key=len)  # "the new road" over "road"
        elif rules.require_topic:
            return Rejection(
                step,
                text,
                "no topic",
                f"uses no {{{rules.topic_name}}} and names none of the topics",
            )
    return CheckedText(text, topic)


def placeholder_name(raw: str) -> str:
    """A model's placeholder name as a valid one (``Rival Party`` → ``rival_party``), or ""."""
    name = slug(raw.strip("{}[]<> "), "_")
    return name if PLACEHOLDER_NAME_RE.match(name) else ""
