"""Offline journalist questions from the pack's question templates.

A question must fit its answer: its template is about the answer's topic (or any topic)
and suits the answer's style, and its placeholders are filled with the answer's own values
(the topic above all), so "What about inflation?" never precedes an answer about pensions.
Variety comes from drawing each (topic, style) pair's fitting templates as a shuffled deck.

Some question templates are set aside for the held-out set, so a benchmark question never
shares its wording with a training question.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from talklike.generation.engine import Answer
from talklike.packs.loader import ANY, Pack, Question

#: Share of the question templates reserved for held-out questions (at least one when possible).
HELDOUT_TEMPLATE_SHARE = 0.2


def split_question_pool(pack: Pack, seed: int, reserve: bool) -> tuple[list[Question], list[Question]]:
    """(training templates, held-out templates), held-out chosen by ``seed``.

    A template moves to the held-out pool only while every style keeps at least one template
    with topic ``*`` for training, so every answer can still get a question.
    """
    pool = list(pack.questions)
    if not reserve:
        return pool, []
    order = list(pool)
    random.Random(f"talklike-heldout-pool:{seed}").shuffle(order)
    target = max(1, round(len(pool) * HELDOUT_TEMPLATE_SHARE))
    train = list(pool)
    heldout: list[Question] = []

    def generic_for(style: str, questions: list[Question]) -> list[Question]:
        return [q for q in questions if q.topic == ANY and (ANY in q.styles or style in q.styles)]

    def reserve_one(question: Question) -> bool:
        rest = [q for q in train if q is not question]
        if all(generic_for(s, rest) for s in pack.style_ids):
            train.remove(question)
            heldout.append(question)
            return True
        return False

    # First one generic question per style, so held-out questions cover every style...
    for style in pack.style_ids:
        if len(heldout) < target and not generic_for(style, heldout):
            for question in order:
                if question in train and question in generic_for(style, train) and reserve_one(question):
                    break
    # ...then any others up to the share.
    for question in order:
        if len(heldout) >= target:
            break
        if question in train:
            reserve_one(question)
    return train, heldout


class QuestionPicker:
    """Picks and fills a fitting question for an answer from a pool of templates."""

    def __init__(self, pack: Pack, pool: Sequence[Question], rng: random.Random) -> None:
        self.pack = pack
        self.pool = tuple(pool)
        self.rng = rng
        self._decks: dict[tuple[str, str], list[Question]] = {}
        self._fitting: dict[tuple[str, str], tuple[Question, ...]] = {}
        self.used: dict[str, int] = {}

    def fitting(self, topic: str, style: str) -> tuple[Question, ...]:
        """Templates of the pool that suit an answer about ``topic`` in ``style``."""
        key = (topic, style)
        found = self._fitting.get(key)
        if found is None:
            found = tuple(q for q in self.pool if q.fits(topic, style))
            self._fitting[key] = found
        return found

    def pick(self, topic: str, style: str) -> Question | None:
        """The next template from the pair's shuffled deck; None when nothing in the pool fits."""
        key = (topic, style)
        deck = self._decks.get(key)
        if not deck:
            cards = self.fitting(topic, style)
            if not cards:
                return None
            deck = list(cards)
            self.rng.shuffle(deck)
            self._decks[key] = deck
        question = deck.pop()
        self.used[question.id] = self.used.get(question.id, 0) + 1
        return question

    def fill(self, question: Question, answer_values: dict[str, str]) -> str:
        """The question's text with the answer's values; other placeholders get random values.

        Case forms (``{tema_4p}``) are made from the answer's own values, so the question
        names the answer's topic in the case its sentence needs.
        """
        text = question.text
        if all(name in answer_values for name in text.names):
            return text.fill(answer_values)
        values = dict(answer_values)
        for name in self.pack.draws(text):
            if name not in values:
                values[name] = self.rng.choice(self.pack.placeholders[name])
        return text.fill(self.pack.complete(text, values))

    def question_for(self, answer: Answer) -> tuple[str, str]:
        """(question text, template id) for ``answer``; ("", "") when the pool has none that fits."""
        question = self.pick(answer.topic, answer.style)
        if question is None:
            return "", ""
        return self.fill(question, answer.values), question.id
