"""A small persona-style chat dataset in a data home."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

SYSTEM = "Jsi satirická persona. Mluvíš hovorovou češtinou a podepisuješ se."
TOPICS = ["inflace", "důchody", "daně", "energie", "Brusel", "dálnice", "školství", "zdravotnictví"]
OPENERS = ["To je neuvěřitelný!", "Kampaň!", "Já jsem makal celej život.", "Voni jenom kradou."]


def write_dataset(home: Path, count: int = 48, seed: int = 0) -> Path:
    rng = random.Random(seed)
    directory = home / "datasets" / "persona"
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        answer = f"{rng.choice(OPENERS)} {topic.capitalize()}? To je kampaň proti nám.\nAndrej Babiš"
        question = f"Pane předsedo, jak hodnotíte {topic}?"
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    split = int(count * 0.8)
    for name, part in (("train.jsonl", rows[:split]), ("val.jsonl", rows[split:])):
        (directory / name).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8"
        )
    return directory / "train.jsonl"


@pytest.fixture
def persona_home(tmp_path: Path) -> Path:
    write_dataset(tmp_path)
    return tmp_path
