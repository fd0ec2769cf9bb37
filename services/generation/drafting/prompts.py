"""The prompt of each drafting step: one small JSON object per call, with an example.

The seed's lesson was that an LLM writes a usable pack only when the job is cut into small,
detailed steps; a small model (SmolLM2-135M) needs that even more. So every prompt:

- asks for one small JSON object with one or a few keys, and shows a complete example of it
  (the example persona, a retired sea captain, is deliberately unlike any real request, so a
  copied example is easy to spot and refuse);
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

EXAMPLE_PERSONA: dict[str, Any] = {
    "display_name": "Captain Nora Gale",
    "language": "en",
    "signature": "Captain Nora Gale",
    "satire": False,
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


def language_name(code: str) -> str:
    """``English (en)`` for known codes, else the tag itself."""
    name = LANGUAGES.get(code.split("-")[0])
    return f"{name} ({code})" if name else f"the language with the code {code!r}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _samples(examples: Sequence[str]) -> str:
    if not examples:
        return ""
    lines = "\n".join(f"- {e}" for e in examples)
    return f"\nHow the persona talks (real examples):\n{lines}\n"


def _persona_line(persona: Mapping[str, Any]) -> str:
    return f"Persona: {persona['display_name']}. {persona['description']}"


def persona(description: str, language: str, examples: Sequence[str]) -> list[dict[str, str]]:
    """Step ``persona``: name, language, signature, satire and a short description."""
    rule = (
        f"The persona speaks {language_name(language)}; use language {language!r}."
        if language
        else "language is the code of the language the persona speaks (en, cs, de, ...)."
    )
    return _messages(
        f"Here is a persona, described by the user:\n{description}\n{_samples(examples)}\n"
        "Write its card as a JSON object with these keys: display_name (its name), language, "
        "signature (the name it signs its answers with), satire (true if it is a parody), "
        f"description (one or two sentences).\n{rule}\n"
        f"Example of the format (for a different persona):\n{_json(EXAMPLE_PERSONA)}"
    )


def voice(persona_card: Mapping[str, Any], examples: Sequence[str]) -> list[dict[str, str]]:
    """Step ``voice``: the system prompt of the dataset, catchphrases and hesitation fillers."""
    return _messages(
        f"{_persona_line(persona_card)}\nLanguage: {language_name(persona_card['language'])}.\n"
        f"{_samples(examples)}\n"
        "Write a JSON object with: system_prompt (two sentences that tell a chatbot to answer "
        "journalists as this persona), catchphrases (5 short phrases the persona repeats), "
        "fillers (2 short words it says when it hesitates). Write them in the persona's language.\n"
        f"Example of the format (for a different persona):\n{_json(EXAMPLE_VOICE)}"
    )


def styles(persona_card: Mapping[str, Any], count: int, examples: Sequence[str]) -> list[dict[str, str]]:
    """Step ``styles``: ``count`` distinct ways the persona answers."""
    return _messages(
        f"{_persona_line(persona_card)}\n{_samples(examples)}\n"
        f"List {count} different styles in which this persona answers a journalist. Each style has "
        "an id (one lower-case English word), a name and a description of one sentence.\n"
        f"Example of the format (for a different persona):\n{_json({'styles': EXAMPLE_STYLES})}"
    )


def topics(persona_card: Mapping[str, Any], count: int) -> list[dict[str, str]]:
    """Step ``topics``: the subjects journalists ask about (values of ``{topic}``)."""
    return _messages(
        f"{_persona_line(persona_card)}\n"
        f"List {count} topics journalists ask this persona about. Each topic is a short noun "
        f"phrase of 1 to 5 words in {language_name(persona_card['language'])}.\n"
        f"Example of the format (for a different persona):\n{_json({'topics': EXAMPLE_TOPICS})}"
    )


def placeholders(persona_card: Mapping[str, Any], count: int) -> list[dict[str, str]]:
    """Step ``placeholders``: names of the word lists the templates will draw from."""
    return _messages(
        f"{_persona_line(persona_card)}\n"
        "We will write answer templates with gaps, like 'It is the fault of {rival}.' "
        f"List {count} kinds of words that fill such gaps for this persona (besides the topic). "
        "Each has a name (one lower-case English word) and its meaning.\n"
        "Example of the format (for a different persona):\n"
        f"{_json({'placeholders': EXAMPLE_PLACEHOLDERS})}"
    )


def vocabulary(persona_card: Mapping[str, Any], name: str, meaning: str, count: int) -> list[dict[str, str]]:
    """Step ``vocabulary``: the values of one placeholder."""
    what = f" ({meaning})" if meaning else ""
    return _messages(
        f"{_persona_line(persona_card)}\n"
        f"List {count} different values for the gap {{{name}}}{what}, as this persona would say "
        f"them, in {language_name(persona_card['language'])}. Each value is 1 to 6 words that fit "
        "in the middle of a sentence.\n"
        f"Example of the format (for the gap {{rival}} of a different persona):\n"
        f"{_json({'values': EXAMPLE_VALUES})}"
    )


def _gaps(vocab: Mapping[str, Sequence[str]], meanings: Mapping[str, str]) -> str:
    lines = []
    for name, values in vocab.items():
        meaning = meanings.get(name, "")
        sample = ", ".join(values[:3])
        lines.append(f"{{{name}}}" + (f" = {meaning}" if meaning else "") + f" (e.g. {sample})")
    return "\n".join(lines)


def _written(written: Sequence[str]) -> str:
    if not written:
        return ""
    return "\nAlready written (write different ones):\n" + "\n".join(f"- {t}" for t in written) + "\n"


def example_template(topic_name: str, others: Sequence[str]) -> list[str]:
    """Two template examples in the format, written with the real placeholder names."""
    other = others[0] if others else topic_name
    return [
        f"Everyone asks me about {{{topic_name}}}. I say: ask {{{other}}}!",
        f"{{{topic_name}}}? In my day we did not need {{{other}}} to sort that out.",
    ]


def templates(
    persona_card: Mapping[str, Any],
    style: Mapping[str, str],
    vocab: Mapping[str, Sequence[str]],
    meanings: Mapping[str, str],
    topic_name: str,
    count: int,
    written: Sequence[str],
    examples: Sequence[str],
) -> list[dict[str, str]]:
    """Step ``templates``: ``count`` answer templates in one style."""
    others = [n for n in vocab if n != topic_name]
    done = _written(written)
    return _messages(
        f"{_persona_line(persona_card)}\n"
        f"Style {style['name']!r}: {style['description']}\n"
        f"{_samples(examples)}"
        f"Gaps you can use, written exactly like this with curly braces:\n{_gaps(vocab, meanings)}\n"
        f"{done}\n"
        f"Write {count} different answers this persona gives a journalist, in the style "
        f"{style['name']!r}, in {language_name(persona_card['language'])}. Each answer is one to "
        f"three sentences and contains the gap {{{topic_name}}}; it may use the other gaps. "
        "Do not sign the answers.\n"
        "Example of the format:\n"
        f"{_json({'templates': example_template(topic_name, others)})}"
    )


def example_questions(topic_name: str) -> list[str]:
    """Two question examples in the format."""
    return [f"What do you say about {{{topic_name}}}?", f"Who is to blame for {{{topic_name}}}?"]


def questions(
    persona_card: Mapping[str, Any],
    vocab: Mapping[str, Sequence[str]],
    meanings: Mapping[str, str],
    topic_name: str,
    count: int,
    written: Sequence[str],
) -> list[dict[str, str]]:
    """Step ``questions``: journalist questions with gaps."""
    done = _written(written)
    topic_only = {topic_name: vocab[topic_name]}
    return _messages(
        f"{_persona_line(persona_card)}\n"
        f"Gaps you can use, written exactly like this with curly braces:\n{_gaps(topic_only, meanings)}\n"
        f"{done}\n"
        f"Write {count} different questions a journalist asks this persona, in "
        f"{language_name(persona_card['language'])}. Each question is one sentence and contains "
        f"the gap {{{topic_name}}}.\n"
        "Example of the format:\n"
        f"{_json({'questions': example_questions(topic_name)})}"
    )


def feedback(reason: str) -> str:
    """The follow-up message after a malformed answer: the problem, and what to send instead."""
    return (
        f"That answer cannot be used: {reason}. Reply again with only the JSON object, "
        "in exactly the format of the example."
    )
