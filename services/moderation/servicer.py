"""talklike.v1.ModerationService: proto ↔ domain translation over ``ModerationCore``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from talklike.common.errors import InvalidArgument
from talklike.common.progress import ProgressRelay
from talklike.common.service import ServiceBinding
from talklike.moderation.categories import Scores
from talklike.moderation.core import BackendEvaluation, ModerationCore, Source
from talklike.moderation.dataset import DatasetRun
from talklike.moderation.evaluation import Counts
from talklike.moderation.policy import LIKELY_BLOCKED, Preflight
from talklike.moderation.settings import ModerationSettings
from talklike.v1 import common_pb2
from talklike.v1 import moderation_pb2 as pb
from talklike.v1 import moderation_pb2_grpc as pb_grpc

BACKEND_NAMES: dict[int, str] = {
    pb.MODERATION_BACKEND_UNSPECIFIED: "",
    pb.MODERATION_BACKEND_LOCAL: "local",
    pb.MODERATION_BACKEND_OPENAI: "openai",
}
ROLE_NAMES: dict[int, str] = {
    common_pb2.CHAT_ROLE_SYSTEM: "system",
    common_pb2.CHAT_ROLE_USER: "user",
    common_pb2.CHAT_ROLE_ASSISTANT: "assistant",
}
ACTION_NAMES: dict[int, str] = {
    pb.MODERATION_ACTION_UNSPECIFIED: "",
    pb.MODERATION_ACTION_DROP: "drop",
    pb.MODERATION_ACTION_ANNOTATE: "annotate",
}
#: Problems listed in the summary; all of them are in the quarantine file and report.json.
SUMMARY_PROBLEMS = 100


def backend_name(value: int, field: str) -> str:
    if value not in BACKEND_NAMES:
        raise InvalidArgument(field, f"unknown backend {value}")
    return BACKEND_NAMES[value]


def result_pb(scores: Scores, thresholds: dict[str, float]) -> pb.ModerationResult:
    return pb.ModerationResult(
        flagged=scores.flagged,
        categories=scores.flags,
        category_scores=scores.scores,
        reasons=list(scores.reasons),
        policy_violations=sorted(scores.violations(thresholds)),
    )


def preflight_pb(check: Preflight) -> pb.PreflightCheck:
    verdict = (
        pb.PREFLIGHT_VERDICT_LIKELY_BLOCKED if check.verdict == LIKELY_BLOCKED else pb.PREFLIGHT_VERDICT_PASS
    )
    return pb.PreflightCheck(
        example_count=check.examples,
        flagged_count=check.flagged,
        flagged_share=check.share,
        flagged_share_limit=check.limit,
        verdict=verdict,
        advice=check.advice,
    )


def summary_pb(run: DatasetRun) -> pb.ModerationSummary:
    return pb.ModerationSummary(
        out_dir=str(run.out_dir),
        moderated_path=str(run.paths["moderated"]),
        flagged_path=str(run.paths["flagged"]),
        quarantine_path=str(run.paths["quarantine"]),
        report_json_path=str(run.paths["report_json"]),
        report_markdown_path=str(run.paths["report_markdown"]),
        line_count=run.lines,
        kept_count=run.kept,
        removed_count=run.removed,
        quarantined_count=run.quarantined,
        flagged_count=run.flagged,
        categories=[
            pb.CategoryStats(
                category=row.category,
                threshold=row.threshold,
                violation_count=row.violations,
                backend_flagged_count=row.backend_flagged,
                max_score=row.max_score,
                mean_score=row.mean_score,
            )
            for row in run.category_stats
        ],
        input_preflight=preflight_pb(run.input_preflight),
        output_preflight=preflight_pb(run.output_preflight),
        backend=run.backend,
        model=run.model,
        text_count=run.texts,
        problems=[
            common_pb2.LineProblem(line_number=p.line_number, reason=p.reason, field_path=p.field_path)
            for line in run.bad
            for p in line.problems
        ][:SUMMARY_PROBLEMS],
        elapsed_ms=int(run.elapsed_s * 1000),
        action=pb.MODERATION_ACTION_ANNOTATE if run.action == "annotate" else pb.MODERATION_ACTION_DROP,
    )


class ModerationServicer(pb_grpc.ModerationServiceServicer):
    """Thin: every decision is in ModerationCore and the modules under it."""

    def __init__(self, core: ModerationCore) -> None:
        self.core = core

    async def Moderate(self, request: pb.ModerateRequest, context: Any) -> pb.ModerateResponse:
        answer = await self.core.moderate(
            list(request.texts), backend_name(request.backend, "backend"), dict(request.thresholds)
        )
        return pb.ModerateResponse(
            results=[result_pb(r, answer.thresholds) for r in answer.results],
            backend=answer.backend,
            model=answer.model,
            thresholds=answer.thresholds,
        )

    async def ModerateDataset(
        self, request: pb.ModerateDatasetRequest, context: Any
    ) -> AsyncIterator[pb.ModerateDatasetResponse]:
        which = request.WhichOneof("source")
        source = Source(
            path=request.path if which == "path" else "",
            content=request.content if which == "content" else None,
            name=request.file_name,
        )
        roles = []
        for i, role in enumerate(request.policy.roles):
            if role not in ROLE_NAMES:
                raise InvalidArgument(
                    f"policy.roles[{i}]", "must be CHAT_ROLE_SYSTEM, CHAT_ROLE_USER or CHAT_ROLE_ASSISTANT"
                )
            roles.append(ROLE_NAMES[role])
        if request.policy.action not in ACTION_NAMES:
            raise InvalidArgument("policy.action", f"unknown action {request.policy.action}")
        prepared = self.core.prepare(
            source,
            out=request.out,
            backend=backend_name(request.backend, "backend"),
            thresholds=dict(request.policy.thresholds),
            roles=roles,
            action=ACTION_NAMES[request.policy.action],
            flagged_share_limit=(
                request.policy.flagged_share_limit if request.policy.HasField("flagged_share_limit") else None
            ),
            worst_count=request.worst_example_count,
        )
        relay = ProgressRelay()
        task = self.core.start(prepared, relay.report)
        async with aclosing(relay.follow(task)) as reports:
            async for progress in reports:
                yield pb.ModerateDatasetResponse(progress=progress)
        result = task.result()
        yield pb.ModerateDatasetResponse(summary=summary_pb(result))

    async def EvaluateBackend(
        self, request: pb.EvaluateBackendRequest, context: Any
    ) -> pb.EvaluateBackendResponse:
        result = await self.core.evaluate_backend(
            backend_name(request.backend, "backend"), request.split, request.lang, request.set_path
        )
        return evaluation_pb(result)


def counts_pb(category: str, counts: Counts) -> pb.CategoryEvaluation:
    reply = pb.CategoryEvaluation(
        category=category,
        true_positive_count=counts.tp,
        false_positive_count=counts.fp,
        false_negative_count=counts.fn,
        true_negative_count=counts.tn,
    )
    if counts.precision is not None:
        reply.precision = counts.precision
    if counts.recall is not None:
        reply.recall = counts.recall
    return reply


def evaluation_pb(result: BackendEvaluation) -> pb.EvaluateBackendResponse:
    report = result.report
    return pb.EvaluateBackendResponse(
        backend=result.backend,
        model=result.model,
        text_count=report.texts,
        categories=[counts_pb(name, c) for name, c in report.per_category.items()],
        any_flagged=counts_pb("any (flagged)", report.any_flagged),
        any_policy=counts_pb("any (policy thresholds)", report.any_policy),
        kind_counts=report.kinds,
        false_alarm_counts=report.false_alarms_by_kind,
        misses=[
            pb.EvaluationMiss(id=m.id, text=m.text, missed=m.missed, extra=m.extra) for m in report.errors
        ],
    )


class ModerationCollector(Collector):
    """Texts and datasets moderated since the service started, and the OpenAI backend's requests."""

    def __init__(self, core: ModerationCore) -> None:
        self.core = core

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(
            "talklike_moderation_texts",
            "Texts scored (distinct texts of datasets included).",
            value=self.core.texts_moderated,
        )
        yield CounterMetricFamily(
            "talklike_moderation_datasets", "Datasets moderated.", value=self.core.datasets_moderated
        )
        openai_stats = self.core.openai_stats()
        yield CounterMetricFamily(
            "talklike_moderation_openai_requests",
            "Requests sent to OpenAI's moderation endpoint.",
            value=openai_stats.requests,
        )
        yield CounterMetricFamily(
            "talklike_moderation_openai_retries",
            "OpenAI requests retried after a 429, 5xx or connection error.",
            value=openai_stats.retries,
        )


def create_service(settings: ModerationSettings) -> ServiceBinding:
    """The moderation service's binding for the shared server runtime."""
    core = ModerationCore(settings)
    servicer = ModerationServicer(core)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_ModerationServiceServicer_to_server(servicer, server)

    async def warm_lexicon() -> None:
        # Compiling the lexicon takes a few tens of milliseconds: before readiness, not in the first request.
        await asyncio.to_thread(core.local.classifier.classify, "")

    return ServiceBinding(
        full_name=settings.full_name,
        register=register,
        on_start=[warm_lexicon],
        on_stop=[core.close],
        collectors=[ModerationCollector(core)],
    )
