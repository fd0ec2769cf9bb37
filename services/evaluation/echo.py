"""Copied from the prompt: the words of an answer that repeat the system prompt or the question.

A base model that is not instruction-tuned often answers by echoing its prompt: the persona's
system prompt ("Jsi satirická parodie politika … kampaň …") and the question. Scored as it
stands, that echo is full of persona vocabulary and of the question's topic, so the untuned
model looked persona-like and on topic. Here a run of ``COPY_RUN_WORDS`` or more consecutive
words that also stands in the prompt (case and accents aside) is copied; markers and topic are
judged on the rest (the answer's own words), and an answer mostly made of copies is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from talklike.evaluation.language import WORD_RE, fold

#: Consecutive words shared with the prompt that count as a copy: short enough to catch an echoed
#: clause, long enough that a persona naming the question's topic ("o cenách energií") is not one.
COPY_RUN_WORDS = 4
#: An answer at least this share copied "copies the prompt".
COPIES_PROMPT_FROM = 0.3


@dataclass(frozen=True)
class Copying:
    """An answer's own words and how much of it was copied from the prompt."""

    own_text: str
    copied_share: float
    copies_prompt: bool


def copying(answer: str, prompt: str) -> Copying:
    """Split ``answer`` into what it copied from ``prompt`` (runs of 4+ words) and its own words."""
    found = [(match.group(), fold(match.group())) for match in WORD_RE.finditer(answer)]
    prompt_words = [fold(match.group()) for match in WORD_RE.finditer(prompt)]
    runs = {
        tuple(prompt_words[i : i + COPY_RUN_WORDS]) for i in range(len(prompt_words) - COPY_RUN_WORDS + 1)
    }
    copied = [False] * len(found)
    for i in range(len(found) - COPY_RUN_WORDS + 1):
        if tuple(folded for _, folded in found[i : i + COPY_RUN_WORDS]) in runs:
            copied[i : i + COPY_RUN_WORDS] = [True] * COPY_RUN_WORDS
    share = sum(copied) / len(found) if found else 0.0
    own = " ".join(word for (word, _), was_copied in zip(found, copied, strict=True) if not was_copied)
    return Copying(own_text=own, copied_share=round(share, 4), copies_prompt=share >= COPIES_PROMPT_FROM)
