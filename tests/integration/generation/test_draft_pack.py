"""DraftPack end to end: a real generation service and a real OpenAI-compatible HTTP server on loopback.

The server (aiohttp, written here) answers ``POST /v1/chat/completions`` in OpenAI's format.
It reads which step a prompt is from the prompt's JSON example and answers it like a
middling LLM would: mostly good, with items a pack must not keep (no placeholder, an unknown
placeholder, the signature, duplicates, near duplicates, a repairable ``{{topic}}``), a prose
reply to the first template batch (retried with the problem fed back), and one batch that is
garbage on every attempt (set aside). It can also be told to answer only garbage, or to go
down (HTTP 500) after some requests, to test the failure report and resuming.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiohttp import web
from loopback_http import api_error, chat_completion, serve_post
from talklike.cli.main import app
from talklike.common.testing import RunningService, running_service
from talklike.generation.servicer import create_service
from talklike.generation.settings import GenerationSettings
from talklike.packs.loader import load_pack
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc
from typer.testing import CliRunner, Result

OPENERS = [
    "Mark my words about {topic}",
    "Nobody understands {topic} like I do",
    "Whenever folks mention {topic}",
    "The plain truth regarding {topic}",
    "Back when I started, {topic}",
    "Listen carefully: {topic}",
    "My critics never grasp {topic}",
    "Every single morning {topic}",
    "Between you and me, {topic}",
    "Honestly, {topic}",
]
MIDDLES = [
    "was ruined by {rival}",
    "needs another {gadget} immediately",
    "proves {rival} cannot count",
    "deserves a brass {gadget}",
    "reminds everyone why {rival} lost",
    "is simply misunderstood",
    "would improve with spare {gadget}",
    "keeps {rival} awake tonight",
    "stays my favourite puzzle",
    "gets better through sheer stubbornness",
]
CLOSERS = [
    "and that settles it.",
    "so please write that down.",
    "believe it or not.",
    "which pleases me greatly.",
    "frankly speaking.",
    "as any sensible person knows.",
    "quite magnificently.",
    "whatever the newspapers claim.",
    "until further notice.",
    "mark the date.",
]
QUESTION_HEADS = ["What", "Why", "How", "When", "Who", "Where", "Which", "Whose"]
QUESTION_TAILS = [
    "do you make of {topic}",
    "is {topic} still unresolved",
    "did {topic} go so badly wrong",
    "will {topic} finally improve",
    "decides about {topic} nowadays",
    "should readers complain about {topic}",
    "plan covers {topic}",
    "idea was {topic} originally",
]
#: The worked example's answer says which step a request is.
STEP_KEYS = {
    '{"display_name"': "persona",
    '{"system_prompt"': "voice",
    '{"styles"': "styles",
    '{"topics"': "topics",
    '{"placeholders"': "placeholders",
    '{"values"': "vocabulary",
    '{"templates"': "templates",
    '{"questions"': "questions",
}
WANTED = re.compile(r"Write (\d+) different")
STYLE = re.compile(r"^Style '([^']+)'", re.MULTILINE)
GAP = re.compile(r"values for the gap \{(\w+)\}")


def step_of(prompt: str) -> str:
    return next(step for key, step in STEP_KEYS.items() if key in prompt)


@dataclass
class ScriptedLlm:
    """The loopback LLM: what it was asked, and how it misbehaves."""

    garbage_only: bool = False
    #: Answer every template request with prose.
    no_templates: bool = False
    #: Answer HTTP 500 to every request after this many (None = never).
    down_after: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    feedback_seen: list[str] = field(default_factory=list)
    template_calls: int = 0
    made: int = 0
    garbage_prompt: str = ""
    garbage_left: int = 3

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.down_after is not None and len(self.requests) > self.down_after:
            return api_error(500, "overloaded")
        messages = body["messages"]  # system, the worked example (user, assistant), the request
        prompt = messages[3]["content"]
        retry = len(messages) > 4
        if retry:
            self.feedback_seen.append(messages[-1]["content"])
        if self.garbage_only:
            return self.reply(body, "I am happy to help! What would you like to know?")
        step = step_of(messages[2]["content"])
        self.steps.append(step)
        return self.reply(body, self.answer(step, prompt, retry=retry))

    def answer(self, step: str, prompt: str, retry: bool) -> str:
        if step == "persona":
            return json.dumps(
                {
                    "display_name": "Professor Quill",
                    "language": "en",
                    "signature": "Prof. Quill",
                    "description": "An absent-minded inventor who answers every question with a gadget.",
                }
            )
        if step == "voice":
            return (
                "```json\n"
                + json.dumps(
                    {
                        "system_prompt": "You are Professor Quill, an eccentric inventor. Answer the journalist "
                        "with enthusiasm and a new gadget.",
                        "catchphrases": ["by Jove", "eureka", "precisely", "eureka", "x" * 200],
                        "fillers": ["erm", "indeed"],
                    }
                )
                + "\n```"
            )
        if step == "styles":
            styles = [
                {"id": "boast", "name": "Boast", "description": "Brags about inventions."},
                {"name": "Tangent", "description": "Wanders off into a long story."},
                {"id": "gloom", "name": "Gloom", "description": "Predicts a disaster."},
                {"id": "boast", "name": "Boast again", "description": "A duplicate."},
            ]
            return "Here are the styles: " + json.dumps({"styles": styles})
        if step == "topics":
            return json.dumps(
                [
                    "the tram line",
                    "the museum roof",
                    "school lunches",
                    "the town budget",
                    "the harbour fees",  # the prompt's example: refused
                    "street lighting",
                    "the {bad} topic",
                    "the science fair",
                    "school lunches",
                    "the river bridge",
                ]
            )
        if step == "placeholders":
            return json.dumps(
                {
                    "placeholders": [
                        {"name": "Gadget", "meaning": "an invention"},
                        "rival: who he blames",
                        "topic",
                    ]
                }
            )
        if step == "vocabulary":
            name = GAP.search(prompt).group(1)  # type: ignore[union-attr]
            values = {
                "gadget": [
                    "steam kettle",
                    "clockwork owl",
                    "pocket telescope",
                    "brass umbrella",
                    "tin parrot",
                ],
                "rival": [
                    "the town council",
                    "Doctor Nettle",
                    "the tram company",
                    "the newspaper",
                    "my landlady",
                ],
            }[name]
            return json.dumps({"values": values})
        if step == "templates":
            return self.templates(prompt, retry)
        return self.questions(prompt)

    def templates(self, prompt: str, retry: bool) -> str:
        self.template_calls += 1
        if self.no_templates:
            return "Here are some great answers for the professor!"
        style = STYLE.search(prompt).group(1)  # type: ignore[union-attr]
        wanted = int(WANTED.search(prompt).group(1))  # type: ignore[union-attr]
        if self.template_calls == 1 and not retry:
            return "Sure! Here are some wonderful templates for the professor."
        if style == "Gloom" and "Already written" in prompt and self.garbage_prompt in ("", prompt):
            self.garbage_prompt = prompt  # gloom's second batch: garbage on every attempt, then set aside
            if self.garbage_left > 0:
                self.garbage_left -= 1
                return '{"templates": ["unterminated'
        texts = [self.sentence() for _ in range(wanted)]
        if self.template_calls == 2:
            texts = [
                "The {{topic}} affair proves {rival} wrong every time, truly.",  # repaired
                *texts,  # the last of these is one too many: "beyond the requested count"
                "We shall see what happens next.",  # no placeholder
                "Ask {mayor} about {topic}, not me.",  # unknown placeholder
                "About {topic}, signed Prof. Quill.",  # the signature
                texts[0],  # exact duplicate within the answer
                " ".join(reversed(texts[1].split())),  # the same words in another order
            ]
        if self.template_calls == 3:  # ran out of tokens mid-item: the complete items are kept
            return json.dumps({"templates": [*texts, "And then the {topic} went on and on and on"]})[:-12]
        return json.dumps({"templates": texts})

    def sentence(self) -> str:
        n = self.made
        self.made += 1
        return f"{OPENERS[n % 10]} {MIDDLES[(n // 10) % 10]}, {CLOSERS[(n * 3 + n // 10) % 10]}"

    def questions(self, prompt: str) -> str:
        wanted = int(WANTED.search(prompt).group(1))  # type: ignore[union-attr]
        start = len([s for s in self.steps if s == "questions"]) * 10
        out = [
            f"{QUESTION_HEADS[(start + i) % 8]} {QUESTION_TAILS[(start + i) // 8 % 8]}?"
            for i in range(wanted)
        ]
        return json.dumps({"questions": [*out, "What do you say about {topic}?"]})

    @staticmethod
    def reply(body: dict[str, Any], content: str) -> web.Response:
        return chat_completion(body["model"], content)


@pytest.fixture
async def llm() -> AsyncIterator[tuple[ScriptedLlm, str]]:
    fake = ScriptedLlm()
    async with serve_post("/v1/chat/completions", fake.completions) as base_url:
        yield fake, base_url


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[RunningService, Path]]:
    home = tmp_path / "home"
    settings = GenerationSettings(
        home=home,
        port=0,
        metrics_port=0,
        llm_backoff_s=0.01,
        llm_max_retries=1,
        llm_batch_size=6,
        llm_concurrency=3,
    )
    async with running_service(create_service(settings), settings) as srv:
        yield srv, home


def draft_request(base_url: str, name: str = "quill", **fields: Any) -> pb.DraftPackRequest:
    request = pb.DraftPackRequest(
        name=name,
        description="An eccentric English inventor who answers journalists with gadgets. Satire.",
        examples="Eureka! The tram line needs a clockwork owl.\n\nBy Jove, the budget is a steam kettle.",
        template_count=40,
        satire=True,
        llm=pb.LlmOptions(base_url=base_url, model="drafter-1"),
    )
    for key, value in fields.items():
        setattr(request, key, value)
    return request


async def draft(srv: RunningService, request: pb.DraftPackRequest) -> list[pb.DraftPackResponse]:
    stub = pb_grpc.GenerationServiceStub(srv.channel())
    return [event async for event in stub.DraftPack(request)]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_a_forty_template_pack_is_drafted_gated_published_and_generates(
    service: tuple[RunningService, Path], llm: tuple[ScriptedLlm, str]
) -> None:
    srv, home = service
    fake, base_url = llm
    events = await draft(srv, draft_request(base_url))
    summary = events[-1].summary
    stages = [e.progress.stage for e in events[:-1]]
    assert stages[0] == "persona" and stages[-1] == "write"
    for stage in (
        "voice",
        "styles",
        "topics",
        "placeholders",
        "vocabulary",
        "templates",
        "questions",
        "check",
    ):
        assert stage in stages

    pack_dir = home / "packs" / "quill"
    assert summary.pack_path == str(pack_dir.resolve())
    assert (summary.template_count, summary.requested_template_count, summary.shortfall_count) == (40, 40, 0)
    assert dict(summary.templates_per_style) == {"boast": 14, "tangent": 13, "gloom": 13}
    assert summary.placeholder_count == 3  # topic, gadget, rival

    # Malformed answers: the prose reply was retried with the problem fed back, the broken
    # gloom batch set aside after 1 + 2 attempts.
    assert fake.feedback_seen and "cannot be used: the answer is not JSON" in fake.feedback_seen[0]
    draft_dir = home / "drafts" / "quill"
    set_aside = jsonl(draft_dir / "invalid" / "answers.jsonl")
    assert summary.malformed_answer_count == len(set_aside) == 4
    assert any(a["reason"].startswith("the answer is not JSON") for a in set_aside)
    gloom = [a for a in set_aside if a["step"].startswith("templates/gloom")]
    assert [a["attempt"] for a in gloom] == [1, 2, 3] and "not valid JSON" in gloom[0]["reason"]

    items = jsonl(draft_dir / "invalid" / "items.jsonl")
    reasons = {r["category"] for r in items}
    for expected in (
        "no placeholder",
        "unknown placeholder",
        "contains the signature",
        "exact duplicate",
        "near duplicate",
        "copied from the example",
        "cut off",
        "stray brace",
        "duplicate value",
        "too long",
    ):
        assert expected in reasons, expected
    assert summary.rejected_item_count == len(items)
    assert dict(summary.rejected_by_reason)["no placeholder"] == 1

    pack = load_pack("quill", home)
    assert (pack.display_name, pack.language, pack.signature, pack.satire) == (
        "Professor Quill",
        "en",
        "Prof. Quill",
        True,
    )
    assert pack.placeholders["gadget"][0] == "steam kettle" and "the harbour fees" not in pack.topics
    assert all(t.text.names for t in pack.templates)
    assert any("{topic} affair" in t.text.raw for t in pack.templates), "{{topic}} was repaired"
    assert not any("{mayor}" in t.text.raw for t in pack.templates)
    report = json.loads(summary.report_json)
    assert report == json.loads((draft_dir / "report.json").read_text())
    assert report["status"] == "written" and len(report["samples"]) == 3
    assert summary.llm_request_count == len(fake.requests)
    assert not list((home / "packs").glob(".*")), "nothing but the pack in the packs directory"

    # The new pack generates a valid dataset through the service.
    stub = pb_grpc.GenerationServiceStub(srv.channel())
    generated = [
        e
        async for e in stub.GenerateDataset(
            pb.GenerateDatasetRequest(pack="quill", count=120, seed=1, out="quill-120", heldout_count=5)
        )
    ]
    dataset = generated[-1].summary
    assert dataset.count == 120 and dataset.train_count + dataset.val_count == 120
    lines = jsonl(home / "datasets" / "quill-120" / "all.jsonl")
    assert all(line["messages"][2]["content"].endswith("\nProf. Quill") for line in lines)
    assert all("{" not in line["messages"][1]["content"] for line in lines)

    # Drafting the same name again is refused; with replace it runs from the cache alone.
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await draft(srv, draft_request(base_url))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    before = len(fake.requests)
    fake.garbage_left = 3
    again = (await draft(srv, draft_request(base_url, replace=True)))[-1].summary
    retried_batch = 3  # the gloom batch that never got a valid answer is asked again
    assert len(fake.requests) - before == retried_batch
    assert again.cache_hit_count == len(json.loads(summary.report_json)["steps"]) - 1
    assert again.template_count == 40


async def test_an_endpoint_that_goes_down_leaves_no_pack_and_the_rerun_resumes(
    service: tuple[RunningService, Path], llm: tuple[ScriptedLlm, str]
) -> None:
    srv, home = service
    fake, base_url = llm
    fake.down_after = 8
    with pytest.raises(grpc.aio.AioRpcError) as down:
        await draft(srv, draft_request(base_url, name="resumed"))
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    details = down.value.details() or ""
    assert base_url in details and "/v1" in details and "resumes" in details
    assert not (home / "packs" / "resumed").exists()
    report = json.loads((home / "drafts" / "resumed" / "report.json").read_text())
    assert report["status"] == "failed" and report["pack_path"] is None
    answered = sum(1 for s in report["steps"] if s["ok"])
    assert answered >= 5

    fake.down_after = None
    sent_before = len(fake.requests)
    summary = (await draft(srv, draft_request(base_url, name="resumed")))[-1].summary
    assert summary.cache_hit_count == answered
    first_new = fake.requests[sent_before]["messages"][2]["content"]
    assert step_of(first_new) in ("vocabulary", "templates"), "answered steps were not asked again"
    assert (home / "packs" / "resumed" / "persona.yaml").is_file()


async def test_an_endpoint_that_returns_garbage_stops_with_the_report(
    service: tuple[RunningService, Path], llm: tuple[ScriptedLlm, str]
) -> None:
    srv, home = service
    fake, base_url = llm
    fake.garbage_only = True
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await draft(srv, draft_request(base_url, name="junk", malformed_retries=1))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = info.value.details() or ""
    assert "stopped" in details and "no usable persona answer in 2 attempts" in details
    assert "not JSON" in details and "report.json" in details
    assert len(fake.requests) == 2
    assert not (home / "packs" / "junk").exists()
    draft_dir = home / "drafts" / "junk"
    assert json.loads((draft_dir / "report.json").read_text())["status"] == "failed"
    assert len(jsonl(draft_dir / "invalid" / "answers.jsonl")) == 2


async def test_a_model_that_writes_no_templates_stops_before_the_questions(
    service: tuple[RunningService, Path], llm: tuple[ScriptedLlm, str]
) -> None:
    srv, home = service
    fake, base_url = llm
    fake.no_templates = True
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await draft(srv, draft_request(base_url, name="empty", template_count=10, malformed_retries=0))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = info.value.details() or ""
    assert "gave 0 usable templates of the 10 asked for in 6 batches; a pack needs at least 10" in details
    assert "last problem: the answer is not JSON" in details
    assert "questions" not in fake.steps and not (home / "packs" / "empty").exists()
    report = json.loads((home / "drafts" / "empty" / "report.json").read_text())
    assert report["status"] == "failed" and report["calls"]["malformed_answers"] == 6


async def test_an_unreachable_endpoint_names_the_url_and_what_to_check(
    service: tuple[RunningService, Path], free_port: Callable[[], int]
) -> None:
    srv, home = service
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await draft(srv, draft_request(url, name="nowhere"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details() or ""
    assert url in details and "failed 2 times" in details and "check that" in details.lower()
    assert not (home / "packs" / "nowhere").exists()


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"description": "  "}, "description"),
        ({"template_count": 9}, "template_count"),
        ({"template_count": 5001}, "template_count"),
        ({"name": "Bad Name"}, "name"),
        ({"language": "english!"}, "language"),
        ({"style_count": 1}, "style_count"),
        ({"malformed_retries": 11}, "malformed_retries"),
        ({"examples": "x" * (64 * 1024 + 1)}, "examples"),
        ({"llm": pb.LlmOptions(base_url="", model="m")}, "llm.base_url"),
        ({"llm": pb.LlmOptions(base_url="http://127.0.0.1:1/v1", model="")}, "llm.model"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    service: tuple[RunningService, Path], fields: dict[str, Any], field_name: str
) -> None:
    srv, _home = service
    request = draft_request("http://127.0.0.1:1/v1")
    for key, value in fields.items():
        if key == "llm":
            request.llm.CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await draft(srv, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(f"{field_name}:")


async def test_a_built_in_pack_name_is_refused(service: tuple[RunningService, Path]) -> None:
    srv, _home = service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await draft(srv, draft_request("http://127.0.0.1:1/v1", name="puffington"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "built-in" in (info.value.details() or "")


async def talklike(env: dict[str, str], *args: str) -> Result:
    return await asyncio.to_thread(lambda: CliRunner().invoke(app, list(args), env=env))


async def test_the_cli_drafts_shows_a_sample_and_diffs(
    service: tuple[RunningService, Path], llm: tuple[ScriptedLlm, str], tmp_path: Path
) -> None:
    srv, home = service
    _fake, base_url = llm
    env = {
        "TALKLIKE_HOME": str(home),
        "TALKLIKE_GENERATION_ADDRESS": srv.address,
        "COLUMNS": "200",
        "TERM": "dumb",
    }
    examples = tmp_path / "examples.txt"
    examples.write_text("Eureka! A clockwork owl fixes everything.\n", encoding="utf-8")
    drafted = await talklike(
        env,
        "packs",
        "draft",
        "quillcli",
        "--describe",
        "An eccentric English inventor",
        "--examples",
        str(examples),
        "--llm-base-url",
        base_url,
        "--llm-model",
        "drafter-1",
        "--templates",
        "30",
    )
    assert drafted.exit_code == 0, drafted.output
    for text in ("pack quillcli", "30 of 30", "rejected because", "no placeholder", "packs show quillcli"):
        assert text in drafted.stdout, text

    shown = await talklike(env, "packs", "show", "quillcli", "--sample", "10")
    assert shown.exit_code == 0, shown.output
    answers = re.findall(r"^A: .*$", shown.stdout, re.MULTILINE)
    assert len(answers) == 10 and len(re.findall(r"^Q: .*\?$", shown.stdout, re.MULTILINE)) == 10
    assert shown.stdout.count("Prof. Quill") >= 10
    as_json = await talklike(env, "packs", "show", "quillcli", "--sample", "3", "--json")
    assert len(json.loads(as_json.stdout)["samples"]) == 3

    diffed = await talklike(env, "packs", "diff", "puffington", "quillcli")
    assert diffed.exit_code == 0, diffed.output
    for text in ("templates", "50", "30", "{rival}", "{gadget}", "words in templates"):
        assert text in diffed.stdout, text
    diff_json = json.loads((await talklike(env, "packs", "diff", "puffington", "quillcli", "--json")).stdout)
    assert diff_json["sizes"]["templates"] == {"a": 50, "b": 30, "delta": -20}
    assert diff_json["placeholders"]["gadget"]["in"] == "b"

    refused = await talklike(
        env, "packs", "draft", "x", "--describe", "", "--llm-base-url", base_url, "--llm-model", "m"
    )
    assert refused.exit_code == 1 and "description:" in refused.output
    written = yaml.safe_load((home / "packs" / "quillcli" / "persona.yaml").read_text())
    assert written["name"] == "quillcli" and written["topic_placeholder"] == "topic"
