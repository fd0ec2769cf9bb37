"""Seeded answers from a pack: even style mix, exact slip rate, no duplicates, no empty slot.

Everything random comes from one ``random.Random(seed)`` consumed in a fixed order, so the
same pack, count, seed, batch size and slip probability give the same answers on every
machine (string seeding and ``random`` algorithms are stable across CPython versions).

How the guarantees are met rather than hoped for:
- **styles**: slots are assigned in rounds, each round a shuffled permutation of the styles,
  so every style's share is within one answer of an even split;
- **slips**: each batch gets ``round(p × answers so far) − slips so far`` slipped answers on
  randomly chosen positions, so each answer slips with probability ``p`` and the measured
  rate over the run is ``p`` to within one answer;
- **templates**: each style draws from a shuffled deck of its templates, reshuffled when
  empty, so all templates are used about equally (``templates_used`` counts them);
- **duplicates**: a candidate that repeats a kept answer (exactly or nearly, see ``dedupe``)
  is rejected and the slot draws again, so the requested count is met;
- **placeholders**: templates are split at load time and every name they use was checked
  against the vocabularies, and each answer is checked once more for a leftover ``{name}``;
- **declined forms**: a derived slot (``{tema_7p}``, ``{Tema}``) is never drawn on its own but
  made from the value drawn for its base in the same answer, so every case form in an answer
  names that answer's topic (a fixed-topic template's forms are those of its fixed topic).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from talklike.common.errors import FailedPrecondition
from talklike.generation.dedupe import DuplicateIndex, keys_of_translated, translate
from talklike.packs.loader import ANY, PLACEHOLDER_RE, Pack, Template

#: How many candidates one slot may reject (as duplicates) before the pack counts as exhausted.
MAX_DRAWS_PER_SLOT = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """One generated answer; ``text`` ends with the signature on its own line."""

    index: int
    style: str
    topic: str
    template_id: str
    text: str
    slip_id: str
    #: The drawn values of the template's base placeholders (derived forms are made from them).
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A candidate answer that was drawn and not kept, and why."""

    slot: int
    template_id: str
    text: str
    reason: str


@dataclass
class _Deck:
    """Cards drawn in shuffled rounds, so every card comes up once per round.

    A retired card (a template whose every distinct filling is already used) is never
    drawn again, so small templates do not keep producing duplicates that must be redrawn.
    """

    cards: list[Template]
    rng: random.Random
    _order: list[Template] = field(default_factory=list)
    _retired: set[str] = field(default_factory=set)

    def draw(self) -> Template | None:
        while True:
            if not self._order:
                self._order = [c for c in self.cards if c.id not in self._retired]
                if not self._order:
                    return None
                self.rng.shuffle(self._order)
            card = self._order.pop()
            if card.id not in self._retired:
                return card

    def retire(self, template: Template) -> None:
        self._retired.add(template.id)


def style_schedule(style_ids: tuple[str, ...], count: int, rng: random.Random) -> list[str]:
    """``count`` style ids in shuffled rounds of all styles (each share within one of even)."""
    out: list[str] = []
    while len(out) < count:
        round_ = list(style_ids)
        rng.shuffle(round_)
        out.extend(round_)
    return out[:count]


def slip_quota(probability: float, done: int, batch: int, slipped_so_far: int) -> int:
    """Slips for the next ``batch`` answers so the running rate tracks ``probability``."""
    return max(0, min(batch, round(probability * (done + batch)) - slipped_so_far))


class AnswerGenerator:
    """Generates answers for one pack and seed; ``batches(count)`` yields them batch by batch."""

    def __init__(
        self,
        pack: Pack,
        seed: int,
        *,
        slip_probability: float = 0.15,
        batch_size: int = 300,
        index: DuplicateIndex | None = None,
        rng: random.Random | None = None,
        on_reject: Callable[[Rejected], None] | None = None,
    ) -> None:
        self.pack = pack
        self.rng = rng if rng is not None else random.Random(f"talklike-answers:{seed}")
        self.slip_probability = slip_probability
        self.batch_size = batch_size
        self.index = index if index is not None else DuplicateIndex()
        self.on_reject = on_reject
        self.decks = {s: _Deck(list(pack.templates_by_style[s]), self.rng) for s in pack.style_ids}
        self.capacity = {t.id: pack.template_capacity(t) for t in pack.templates}
        self.kept: dict[str, int] = {}
        #: Final texts (slips included) of the answers kept, for the last exact check.
        self.texts: set[str] = set()
        self._folded: dict[str, str] = {}
        self.vocab = pack.placeholders
        self.topic_name = pack.topic_placeholder
        self.suffix = "\n" + pack.signature
        self.rejected = 0
        self.slips_applied = 0

    def batches(self, count: int, *, label_prefix: str = "answer ") -> Iterator[list[Answer]]:
        """``count`` answers in batches of ``batch_size``; FailedPrecondition if the pack runs dry."""
        styles = style_schedule(self.pack.style_ids, count, self.rng)
        done = 0
        while done < count:
            size = min(self.batch_size, count - done)
            quota = slip_quota(self.slip_probability, done, size, self.slips_applied)
            slipped = set(self.rng.sample(range(size), quota)) if quota else set()
            batch = [self._slot(done + i, styles[done + i], i in slipped, label_prefix) for i in range(size)]
            done += size
            yield batch

    def generate(self, count: int) -> list[Answer]:
        """All ``count`` answers as one list."""
        return [answer for batch in self.batches(count) for answer in batch]

    def fill(self, template: Template) -> tuple[str, dict[str, str]]:
        """The template's text with random values, and the values used (the topic included)."""
        body, _translated, values = self._fill(template)
        return body, values

    def _fill(self, template: Template) -> tuple[str, str, dict[str, str]]:
        """(text, its folded characters for the duplicate keys, values).

        The folded form is joined from folded parts memoised per literal and per value, which
        is exact because folding works character by character (``dedupe.translate``).
        """
        values: dict[str, str] = {}
        random_ = self.rng.random  # one C call per value: several times faster than choice()
        for name in template.draws:
            vocab = self.vocab[name]
            values[name] = vocab[int(random_() * len(vocab))]
        if template.topic != ANY:
            values[self.topic_name] = template.topic
        elif self.topic_name not in values:  # pragma: no cover - the loader refuses such templates
            values[self.topic_name] = self.rng.choice(self.vocab[self.topic_name])
        filled = self.pack.complete(template.text, values)
        parts = list(template.text.parts)
        folded = list(parts)
        memo = self._folded
        for i, part in enumerate(parts):
            if i % 2:
                parts[i] = part = filled[part]
            cached = memo.get(part)
            if cached is None:
                cached = memo[part] = translate(part)
            folded[i] = cached
        return "".join(parts), "".join(folded), values

    def _slot(self, slot: int, style: str, slip: bool, label_prefix: str) -> Answer:
        deck = self.decks[style]
        for _ in range(MAX_DRAWS_PER_SLOT):
            template = deck.draw()
            if template is None:
                break
            body, translated, values = self._fill(template)
            # Duplicates are judged on the answer before its slip (an answer and the same answer
            # with a slip are duplicates), so a rejected candidate costs no slip regexes.
            keys = keys_of_translated(translated)
            reason = self.index.check_keys(body, keys)
            slip_id = ""
            text = body + self.suffix
            if not reason:
                if slip:
                    slipped, slip_id = self._slip(body)
                    text = slipped + self.suffix
                if text in self.texts:  # pragma: no cover - a slip turning one answer into another
                    reason = "exact duplicate of an earlier answer (after its slip)"
            if reason:
                self.rejected += 1
                if self.on_reject is not None:
                    self.on_reject(Rejected(slot, template.id, text, reason))
                continue
            if PLACEHOLDER_RE.search(text):
                raise FailedPrecondition(
                    f"template {template.id} of pack {self.pack.name!r} left a placeholder unfilled: {text!r}"
                )
            self.index.add(body, keys, f"{label_prefix}{slot + 1}")
            self.texts.add(text)
            kept = self.kept[template.id] = self.kept.get(template.id, 0) + 1
            if kept >= self.capacity[template.id]:
                deck.retire(template)
            if slip_id:
                self.slips_applied += 1
            return Answer(slot, style, values[self.topic_name], template.id, text, slip_id, values)
        raise FailedPrecondition(
            f"pack {self.pack.name!r} cannot produce more distinct answers in style {style!r} "
            f"after {slot} answers (its templates are used up or keep repeating); "
            "ask for fewer answers, or add templates or placeholder values to the pack"
        )

    def _slip(self, body: str) -> tuple[str, str]:
        """``body`` with one slip applied, and its id: rules are tried from a random one on, and
        the first that changes the text is used."""
        rules = self.pack.slips
        n = len(rules)
        start = int(self.rng.random() * n) if n else 0
        for k in range(n):
            rule = rules[(start + k) % n]
            changed = rule.find.sub(rule.replace, body, count=1)
            if changed != body:
                return changed, rule.id
        return body, ""
