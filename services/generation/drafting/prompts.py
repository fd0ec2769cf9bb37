"""The prompt of each drafting step: one small JSON object per call, shown by example first.

The seed's lesson was that an LLM writes a usable pack only when the job is cut into small,
detailed steps; a small model (SmolLM2-135M) needs that even more. So every prompt:

- asks for one small JSON object with one to three keys;
- shows the format as a finished exchange before the real request: the same request for an
  example persona (a retired sea captain, deliberately unlike any real request, so a copied
  example is easy to spot and refuse) and its answer as the assistant's turn. Small chat
  models follow such a worked example far more reliably than a format described in words
  (measured on SmolLM2-135M: an inline example was echoed back as prose three times out of
  three; the same request after a worked exchange came back as the JSON asked for);
- repeats what the model needs from earlier steps (the persona, the style, the placeholders
  with sample values) instead of relying on a long conversation;
- is a pure function of its inputs, so the same draft asks the same questions and the answer
  cache can resume a run that stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SYSTEM = (
    "You write data files for a persona. You always reply with exactly one JSON object "
    "and nothing else: no explanation, no code fence."
)
ENDING = "Reply with the JSON object only."

#: Names of common languages, so a prompt says "English" rather than only "en".
LANGUAGES = {
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "sk": "Slovak",
    "sv": "Swedish",
    "uk": "Ukrainian",
}

EXAMPLE_DESCRIPTION = (
    "A retired sea captain who runs the harbour café and has an opinion on everything; cheerful, salty."
)
EXAMPLE_PERSONA: dict[str, Any] = {
    "display_name": "Captain Nora Gale",
    "language": "en",
    "description": "A retired sea captain who runs the harbour café and has an opinion on everything.",
}
EXAMPLE_VOICE: dict[str, Any] = {
    "system_prompt": "You are Captain Nora Gale, a retired sea captain. Answer the journalist in your own "
    "salty, cheerful way, with stories from the sea.",
    "catchphrases": ["batten down the hatches", "in all my years at sea", "steady as she goes"],
    "fillers": ["well", "mind you"],
}
EXAMPLE_STYLES = [
    {"id": "yarn", "name": "Sea yarn", "description": "Answers with a long story from her years at sea."},
    {"id": "grumble", "name": "Grumble", "description": "Complains about landlubbers and modern boats."},
]
EXAMPLE_TOPICS = ["the harbour fees", "the new lighthouse", "fishing quotas", "the ferry timetable"]
EXAMPLE_PLACEHOLDERS = [
    {"name": "rival", "meaning": "who she blames"},
    {"name": "boast", "meaning": "something she is proud of"},
]
EXAMPLE_VALUES = ["the harbour master", "the ferry company", "the tourists"]
EXAMPLE_VOCAB = {"topic": EXAMPLE_TOPICS, "rival": EXAMPLE_VALUES}


def language_name(code: str) -> str:
    """``English (en)`` for known codes, else the tag itself."""
    name = LANGUAGES.get(code.split("-")[0])
    return f"{name} ({code})" if name else f"the language with the code {code!r}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _exchange(example_request: str, example_answer: Any, request: str) -> list[dict[str, str]]:
    """System, the worked example (request and answer), then the real request."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": example_request},
        {"role": "assistant", "content": _json(example_answer)},
        {"role": "user", "content": request},
    ]


def _samples(examples: Sequence[str]) -> str:
    if not examples:
        return ""
    lines = "\n".join(f"- {e}" for e in examples)
    return f"How the persona talks (real examples):\n{lines}\n"


def _persona_line(card: Mapping[str, Any]) -> str:
    return f"Persona: {card['display_name']}. {card['description']}\n"


def _written(written: Sequence[str]) -> str:
    if not written:
        return ""
    return "Already written (write different ones):\n" + "\n".join(f"- {t}" for t in written) + "\n"


def _persona_request(description: str, language: str, examples: Sequence[str]) -> str:
    keys = "display_name (its name) and description (one sentence)"
    if not language:
        keys = "display_name (its name), description (one sentence) and language (the code of its language: en, cs, de, ...)"
    return (
        f"Persona: {description}\n{_samples(examples)}"
        f"Write the persona's card as a JSON object with the keys {keys}. {ENDING}"
    )


def persona(description: str, language: str, examples: Sequence[str]) -> list[dict[str, str]]:
    """Step ``persona``: name and a one-sentence description (and the language when not given).

    Whether the persona is satire is the user's call (a request field): small models answer a
    yes/no key with prose.
    """
    example = dict(EXAMPLE_PERSONA)
    if language:
        del example["language"]
    return _exchange(
        _persona_request(EXAMPLE_DESCRIPTION, language, ()),
        example,
        _persona_request(description, language, examples),
    )


def _voice_request(card: Mapping[str, Any], examples: Sequence[str]) -> str:
    return (
        f"{_persona_line(card)}{_samples(examples)}"
        f"Write, in {language_name(card['language'])}, a JSON object with the keys system_prompt "
        "(two sentences telling a chatbot to answer journalists as this persona), catchphrases "
        f"(5 short phrases the persona repeats) and fillers (2 words it says when it hesitates). {ENDING}"
    )


def voice(card: Mapping[str, Any], examples: Sequence[str]) -> list[dict[str, str]]:
    """Step ``voice``: the system prompt of the dataset, catchphrases and hesitation fillers."""
    return _exchange(_voice_request(EXAMPLE_PERSONA, ()), EXAMPLE_VOICE, _voice_request(card, examples))


def _styles_request(card: Mapping[str, Any], count: int, examples: Sequence[str]) -> str:
    return (
        f"{_persona_line(card)}{_samples(examples)}"
        f"List {count} different styles in which this persona answers a journalist, as a JSON object "
        "with the key styles: each style has an id (one lower-case English word), a name and a "
        f"description (one sentence). {ENDING}"
    )


def styles(card: Mapping[str, Any], count: int, examples: Sequence[str]) -> list[dict[str, str]]:
    """Step ``styles``: ``count`` distinct ways the persona answers."""
    return _exchange(
        _styles_request(EXAMPLE_PERSONA, len(EXAMPLE_STYLES), ()),
        {"styles": EXAMPLE_STYLES},
        _styles_request(card, count, examples),
    )


def _topics_request(card: Mapping[str, Any], count: int) -> str:
    return (
        f"{_persona_line(card)}"
        f"List {count} topics journalists ask this persona about, as a JSON object with the key "
        f"topics. Each topic is a short noun phrase of 1 to 5 words in {language_name(card['language'])}. "
        f"{ENDING}"
    )


def topics(card: Mapping[str, Any], count: int) -> list[dict[str, str]]:
    """Step ``topics``: the subjects journalists ask about (values of ``{topic}``)."""
    return _exchange(
        _topics_request(EXAMPLE_PERSONA, len(EXAMPLE_TOPICS)),
        {"topics": EXAMPLE_TOPICS},
        _topics_request(card, count),
    )


def _placeholders_request(card: Mapping[str, Any], count: int) -> str:
    return (
        f"{_persona_line(card)}"
        "We will write this persona's answers with gaps, like 'It is the fault of {rival}.' "
        f"List {count} kinds of words that fill such gaps (besides the topic), as a JSON object with "
        f"the key placeholders: each has a name (one lower-case English word) and its meaning. {ENDING}"
    )


def placeholders(card: Mapping[str, Any], count: int) -> list[dict[str, str]]:
    """Step ``placeholders``: names of the word lists the templates will draw from."""
    return _exchange(
        _placeholders_request(EXAMPLE_PERSONA, len(EXAMPLE_PLACEHOLDERS)),
        {"placeholders": EXAMPLE_PLACEHOLDERS},
        _placeholders_request(card, count),
    )


def _vocabulary_request(card: Mapping[str, Any], name: str, meaning: str, count: int) -> str:
    what = f" ({meaning})" if meaning else ""
    return (
        f"{_persona_line(card)}"
        f"List {count} different values for the gap {{{name}}}{what}, as this persona would say them "
        f"in {language_name(card['language'])}, as a JSON object with the key values. Each value is "
        f"1 to 6 words that fit in the middle of a sentence. {ENDING}"
    )


def vocabulary(card: Mapping[str, Any], name: str, meaning: str, count: int) -> list[dict[str, str]]:
    """Step ``vocabulary``: the values of one placeholder."""
    return _exchange(
        _vocabulary_request(EXAMPLE_PERSONA, "rival", "who she blames", len(EXAMPLE_VALUES)),
        {"values": EXAMPLE_VALUES},
        _vocabulary_request(card, name, meaning, count),
    )


def _gaps(vocab: Mapping[str, Sequence[str]], meanings: Mapping[str, str]) -> str:
    lines = []
    for name, values in vocab.items():
        meaning = meanings.get(name, "")
        sample = ", ".join(values[:3])
        lines.append(f"{{{name}}}" + (f" = {meaning}" if meaning else "") + f" (e.g. {sample})")
    return "\n".join(lines) + "\n"


def example_template(topic_name: str, others: Sequence[str]) -> list[str]:
    """Two template examples in the format, written with the real placeholder names."""
    other = others[0] if others else topic_name
    return [
        f"Everyone asks me about {{{topic_name}}}. I say: ask {{{other}}}!",
        f"{{{topic_name}}}? In my day we did not need {{{other}}} to sort that out.",
    ]


def _templates_request(
    card: Mapping[str, Any],
    style: Mapping[str, str],
    gaps: str,
    topic_name: str,
    count: int,
    written: Sequence[str],
    examples: Sequence[str],
) -> str:
    return (
        f"{_persona_line(card)}Style {style['name']!r}: {style['description']}\n{_samples(examples)}"
        f"Gaps, written exactly like this with curly braces:\n{gaps}{_written(written)}"
        f"Write {count} different answers this persona gives a journalist, in the style "
        f"{style['name']!r}, in {language_name(card['language'])}, as a JSON object with the key "
        f"templates. Each answer is one to three sentences and contains the gap {{{topic_name}}}; it "
        f"may use the other gaps. Do not sign the answers. {ENDING}"
    )


def templates(
    card: Mapping[str, Any],
    style: Mapping[str, str],
    vocab: Mapping[str, Sequence[str]],
    meanings: Mapping[str, str],
    topic_name: str,
    count: int,
    written: Sequence[str],
    examples: Sequence[str],
) -> list[dict[str, str]]:
    """Step ``templates``: ``count`` answer templates in one style (the example uses the real gaps)."""
    gaps = _gaps(vocab, meanings)
    worked = example_template(topic_name, [n for n in vocab if n != topic_name])
    return _exchange(
        _templates_request(EXAMPLE_PERSONA, EXAMPLE_STYLES[1], gaps, topic_name, len(worked), (), ()),
        {"templates": worked},
        _templates_request(card, style, gaps, topic_name, count, written, examples),
    )


def example_questions(topic_name: str) -> list[str]:
    """Two question examples in the format."""
    return [f"What do you say about {{{topic_name}}}?", f"Who is to blame for {{{topic_name}}}?"]


def _questions_request(
    card: Mapping[str, Any], gaps: str, topic_name: str, count: int, written: Sequence[str]
) -> str:
    return (
        f"{_persona_line(card)}Gaps, written exactly like this with curly braces:\n{gaps}{_written(written)}"
        f"Write {count} different questions a journalist asks this persona, in "
        f"{language_name(card['language'])}, as a JSON object with the key questions. Each question "
        f"is one sentence and contains the gap {{{topic_name}}}. {ENDING}"
    )


def questions(
    card: Mapping[str, Any],
    vocab: Mapping[str, Sequence[str]],
    meanings: Mapping[str, str],
    topic_name: str,
    count: int,
    written: Sequence[str],
) -> list[dict[str, str]]:
    """Step ``questions``: journalist questions with the topic gap."""
    gaps = _gaps({topic_name: vocab[topic_name]}, meanings)
    worked = example_questions(topic_name)
    return _exchange(
        _questions_request(EXAMPLE_PERSONA, gaps, topic_name, len(worked), ()),
        {"questions": worked},
        _questions_request(card, gaps, topic_name, count, written),
    )


def feedback(reason: str) -> str:
    """The follow-up message after a malformed answer: the problem, and what to send instead."""
    return (
        f"That answer cannot be used: {reason}. Reply again with only the JSON object, "
        "in the same format as the first answer above."
    )
