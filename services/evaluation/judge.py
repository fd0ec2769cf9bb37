"""An optional LLM judge: which of two answers talks more like the persona?

Pairwise, and asked twice with the answers in both orders: LLM judges prefer the first (or
second) position, so a verdict only counts when both orders agree; otherwise it is a tie.
Works with any OpenAI-compatible endpoint (OpenAI, vLLM, talklike's own inference face).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

RUBRIC = """You judge which of two answers better imitates a persona, for a benchmark.
Persona: {persona}
Criteria, in order: (1) the persona's voice: vocabulary, catchphrases, rhetorical moves and
language; (2) the answer ends with the signature "{signature}"; (3) it responds to the
question at all. Ignore factual accuracy and politeness: this is satire.
Question: {question}
Answer A: {a}
Answer B: {b}
Reply with JSON only: {{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}}"""


@dataclass(frozen=True)
class Verdict:
    """The outcome for one question: "after", "before" or "tie"."""

    winner: str
    reasons: tuple[str, str]


class PairwiseJudge:
    """Asks an OpenAI-compatible chat model for pairwise verdicts."""

    def __init__(
        self, base_url: str, model: str, persona: str, signature: str, api_key: str = "not-needed"
    ) -> None:
        from openai import OpenAI

        self.client: Any = OpenAI(base_url=base_url, api_key=api_key, max_retries=3)
        self.model = model
        self.persona = persona
        self.signature = signature

    def _ask(self, question: str, a: str, b: str) -> tuple[str, str]:
        prompt = RUBRIC.format(persona=self.persona, signature=self.signature, question=question, a=a, b=b)
        reply = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=120
        )
        text = reply.choices[0].message.content or ""
        match = re.search(r"\{.*\}", text, re.S)
        try:
            data = json.loads(match.group(0)) if match else {}
        except json.JSONDecodeError:
            data = {}
        winner = str(data.get("winner", "")).strip().upper()
        return (winner if winner in {"A", "B", "TIE"} else "INVALID"), str(data.get("reason", text[:200]))

    def judge(self, question: str, before: str, after: str) -> Verdict:
        first, why1 = self._ask(question, before, after)  # after is B
        second, why2 = self._ask(question, after, before)  # after is A
        if first == "B" and second == "A":
            return Verdict("after", (why1, why2))
        if first == "A" and second == "B":
            return Verdict("before", (why1, why2))
        return Verdict("tie", (why1, why2))
