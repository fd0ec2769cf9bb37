"""Draft a persona pack with an LLM in small steps, gate it, and publish it atomically.

The steps, each one LLM call (or a few) with a small JSON answer:
persona card → voice (system prompt, catchphrases, fillers) → styles → topics → placeholder
names → each placeholder's vocabulary → answer templates in batches per style → question
templates. Each answer is parsed and validated (``answers.py``) before it is used; a
malformed one is asked again with the problem fed back, ``malformed_retries`` times, then set
aside under ``<draft>/invalid/answers.jsonl`` with the reason. Bad items inside a good
answer go to ``invalid/items.jsonl``. The steps that everything else needs (persona, voice,
styles, topics, questions) stop the draft when they fail; a failed template batch only costs
the batch.

**Resuming.** Every valid answer is cached under ``<home>/drafts/<name>/cache/``, keyed by
the step and the exact prompt (and model and sampling). Prompts are pure functions of the
request and of earlier answers, and template batches run in rounds whose results are
committed in a fixed style order, so a second run replays every answered step from the
cache without a request and asks only what is still missing.

**Publishing.** The pack is written to a build directory inside the draft directory,
loaded with the pack loader (its full validation), checked by ``gates.pack_problems``, and
only then renamed to ``<home>/packs/<name>`` — one ``rename`` on the same file system, so
the packs directory never holds a half-written pack. A report (``report.json``) is written
whether the draft passes or not.

The stages live in their own modules: ``spec`` (the request), ``asking`` (one step's question
through the cache), ``card`` (persona to vocabulary), ``texts`` (templates and questions),
``publish`` and ``report``; the ``Drafter`` runs them in order over one ``DraftContext``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition, Unavailable
from talklike.generation.drafting.asking import StepAsker
from talklike.generation.drafting.card import (
    draft_persona,
    draft_placeholders,
    draft_styles,
    draft_topics,
    draft_vocabulary,
    draft_voice,
)
from talklike.generation.drafting.publish import publish
from talklike.generation.drafting.report import build_report, draft_figures, write_report
from talklike.generation.drafting.spec import DraftFailed, DraftResult, DraftSpec, check_target
from talklike.generation.drafting.state import DraftContext, DraftLog, Plan, ProgressCallback
from talklike.generation.drafting.texts import draft_questions, draft_templates
from talklike.generation.llm import ChatCaller, ResponseCache

#: The stages before publishing, in order: each reads what the earlier ones put in the plan.
STAGES = (
    draft_persona,
    draft_voice,
    draft_styles,
    draft_topics,
    draft_placeholders,
    draft_vocabulary,
    draft_templates,
    draft_questions,
)


async def _no_progress(stage: str, done: int, total: int) -> None:
    return None


class Drafter:
    """One draft run; ``run()`` returns the published pack or raises (DraftFailed, Unavailable...)."""

    def __init__(self, spec: DraftSpec, home: Path, on_progress: ProgressCallback = _no_progress) -> None:
        self.spec = spec
        self.home = home
        self.on_progress = on_progress
        self.draft_dir = home / "drafts" / spec.name
        self.cache = ResponseCache(self.draft_dir / "cache")
        self.log = DraftLog()
        self.plan = Plan()
        self._caller = ChatCaller(spec.llm)
        self._started = time.monotonic()
        self._last_report: dict[str, Any] = {}

    async def run(self) -> DraftResult:
        """Draft, gate, publish; the report is written in every case."""
        spec = self.spec
        check_target(self.home, spec.name, spec.replace)
        self.draft_dir.mkdir(parents=True, exist_ok=True)
        if spec.fresh:
            shutil.rmtree(self.draft_dir / "cache", ignore_errors=True)
        client = self._caller.open_client()
        asker = StepAsker(spec.llm, self.cache, self.log, spec.malformed_retries, client, self._caller)
        ctx = DraftContext(spec, self.plan, self.log, asker.ask, self.on_progress, self._fail)
        try:
            for stage in STAGES:
                await stage(ctx)
            pack_path = await publish(ctx, self.draft_dir, self.home)
            self._write_report("written", "", pack_path)
            await self.on_progress("write", 1, 1)
        except DraftFailed:
            raise
        except (Unavailable, FailedPrecondition) as error:
            if type(error) not in (Unavailable, FailedPrecondition):
                self._write_report("failed", error.message, None)
                raise
            report_file = self._write_report("failed", error.message, None)
            raise type(error)(
                f"{error.message}. {self._tally()}; nothing was written to the packs directory. "
                f"Check that {spec.llm.base_url} serves the OpenAI chat-completions API (the URL "
                f"usually ends in /v1) and that model {spec.llm.model!r} is served there; the "
                f"report is {report_file}, and the same command resumes from the answers cached so far"
            ) from error
        except BaseException as error:
            self._write_report("failed", f"{type(error).__name__}: {error}", None)
            raise
        finally:
            await client.close()
        return DraftResult(
            spec.name,
            pack_path,
            self.draft_dir,
            self.draft_dir / "report.json",
            draft_figures(spec, self.plan, self.log, self._caller.stats),
            self._last_report,
            time.monotonic() - self._started,
        )

    def _tally(self) -> str:
        stats = self._caller.stats
        return (
            f"{stats.requests} requests ({self.log.cache_hits} answers from the cache), "
            f"{self.log.malformed} malformed answers, {len(self.log.items)} items rejected"
        )

    def _fail(self, problem: str) -> DraftFailed:
        report = self._write_report("failed", problem, None)
        return DraftFailed(
            f"drafting {self.spec.name!r} stopped: {problem}. {self._tally()}; nothing was written to "
            f"the packs directory. Report: {report}. Try a stronger model or a simpler description; "
            "running the same command again resumes from the answers cached so far",
            report,
        )

    def _write_report(self, status: str, problem: str, pack_path: Path | None) -> Path:
        self._last_report = build_report(
            self.spec,
            self.plan,
            self.log,
            self._caller.stats,
            self.draft_dir,
            time.monotonic() - self._started,
            status,
            problem,
            pack_path,
        )
        return write_report(self.draft_dir, self._last_report, self.log)
