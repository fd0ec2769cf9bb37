"""The pieces of LLM mode that need no server: reply parsing, the cache key, the key rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from talklike.common.errors import FailedPrecondition
from talklike.generation.llm import ResponseCache, api_key_for, parse_reply


def test_parse_reply_accepts_fenced_json_and_judges_each_item() -> None:
    content = '```json\n{"questions": ["  What about   taxes? ", "", "Sign? Mini Sig", 7]}\n```'
    questions, problems, whole = parse_reply(content, 4, "Mini Sig")
    assert whole == ""
    assert questions == ["What about taxes?", None, None, None]
    assert problems == [
        "question 2: empty or not a string",
        "question 3: contains the persona's signature",
        "question 4: empty or not a string",
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("Sure, here you go!", "not a JSON object"),
        ('{"questions": ["a", "b"', "not a JSON object"),
        ('{"questions": ["a",, "b"]}', "not valid JSON"),
        ('{"answers": ["a", "b"]}', 'no "questions" list'),
        ('{"questions": ["a"]}', "1 questions for 2 answers"),
        ("", "not a JSON object"),
    ],
)
def test_parse_reply_rejects_malformed_replies(content: str, reason: str) -> None:
    questions, _problems, whole = parse_reply(content, 2, "Sig")
    assert reason in whole and questions == []


def test_a_long_question_is_refused() -> None:
    questions, problems, _ = parse_reply(json.dumps({"questions": ["x" * 401]}), 1, "Sig")
    assert questions == [None] and "longer than 400" in problems[0]


def test_cache_key_covers_model_prompt_and_parameters(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "q"}]
    key = ResponseCache.key("m", messages, {"temperature": 0.7})
    assert key == ResponseCache.key("m", [dict(m) for m in messages], {"temperature": 0.7})
    assert key != ResponseCache.key("m2", messages, {"temperature": 0.7})
    assert key != ResponseCache.key("m", [{"role": "user", "content": "q2"}], {"temperature": 0.7})
    assert key != ResponseCache.key("m", messages, {"temperature": 0.8})
    cache = ResponseCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, "m", messages, {"temperature": 0.7}, '{"questions": []}')
    assert cache.get(key) == '{"questions": []}'
    next(tmp_path.rglob("*.json")).write_text("{torn")
    assert cache.get(key) is None, "a corrupt entry is a miss, not a crash"


def test_openai_needs_a_key_local_servers_do_not() -> None:
    with pytest.raises(FailedPrecondition, match="OPENAI_API_KEY"):
        api_key_for("https://api.openai.com/v1", "")
    assert api_key_for("https://api.openai.com/v1", "k") == "k"
    assert api_key_for("http://127.0.0.1:8000/v1", "") == "not-needed"
