"""A judge model on loopback for the evaluation tests (imported as a module, like reflection_client).

The server is written for these tests (aiohttp, 127.0.0.1, a free port) and implements
``POST /v1/chat/completions`` in OpenAI's documented request and response format. Its
"model" decides from the rubric the judge sends: ``fair`` picks the answer that carries the
signature, ``first`` always says "A" (a pure position bias), ``chatty`` answers in prose
around the JSON, ``garbage`` answers with no JSON at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from loopback_http import chat_completion, serve_post

SIGNATURE = "Andrej Babiš"
QUESTION = "Jak hodnotíte inflaci?"
PLAIN = "Inflation is a complex topic."
PERSONA = "To je kampaň! Já jsem makal.\nAndrej Babiš"
ANSWERS = re.compile(r"Answer A: (.*)\nAnswer B: (.*)\nReply with JSON", re.S)


async def completions(request: web.Request, seen: list[dict[str, Any]]) -> web.Response:
    body = await request.json()
    seen.append(body)
    prompt = body["messages"][-1]["content"]
    a = ANSWERS.search(prompt).group(1)  # type: ignore[union-attr]
    model = body["model"]
    if model == "fair":
        content = '{"winner": "%s", "reason": "it signs"}' % ("A" if SIGNATURE in a else "B")
    elif model == "first":
        content = '{"winner": "A", "reason": "first is best"}'
    elif model == "chatty":
        winner = "A" if SIGNATURE in a else "B"
        content = f'Sure! Here is my verdict:\n```json\n{{"winner": "{winner.lower()}", "reason": "x"}}\n```'
    else:
        content = "I cannot decide."
    return chat_completion(model, content)


@asynccontextmanager
async def judge_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """The server's API base URL and the request bodies it received."""
    seen: list[dict[str, Any]] = []
    async with serve_post("/v1/chat/completions", lambda request: completions(request, seen)) as base_url:
        yield base_url, seen
