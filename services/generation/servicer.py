"""talklike.v1.GenerationService: proto ↔ domain translation over ``GenerationCore``."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from talklike.common.progress import ProgressRelay
from talklike.common.service import ServiceBinding
from talklike.generation import tokens
from talklike.generation.core import DEFAULT_MAX_PROBLEMS, GenerationCore, LlmRequest, Source
from talklike.generation.dataset import DatasetResult
from talklike.generation.drafting.review import Overlap, PackDiff
from talklike.generation.drafting.spec import DraftResult, build_spec
from talklike.generation.settings import GenerationSettings
from talklike.packs.loader import Pack, PackEntry, saturating
from talklike.v1 import common_pb2
from talklike.v1 import generation_pb2 as pb
from talklike.v1 import generation_pb2_grpc as pb_grpc


def pack_pb(entry: PackEntry) -> pb.PackSummary:
    summary = pb.PackSummary(name=entry.name, source=entry.source, path=str(entry.path))
    if entry.pack is None:
        summary.problems.extend(str(p) for p in entry.problems)
        return summary
    pack = entry.pack
    summary.display_name = pack.display_name
    summary.language = pack.language
    summary.signature = pack.signature
    summary.satire = pack.satire
    summary.description = pack.description
    summary.template_count = len(pack.templates)
    summary.style_count = len(pack.styles)
    summary.placeholder_count = len(pack.placeholders)
    summary.question_count = len(pack.questions)
    summary.slip_count = len(pack.slips)
    summary.combination_count = saturating(pack.combinations())
    summary.digest = pack.digest
    summary.styles.extend(
        pb.PackStyle(
            id=s.id,
            name=s.name,
            description=s.description,
            template_count=len(pack.templates_by_style.get(s.id, ())),
        )
        for s in pack.styles
    )
    return summary


def pack_detail_pb(pack: Pack) -> pb.DescribePackResponse:
    counts = pack.counts()
    combinations = pack.combinations()
    return pb.DescribePackResponse(
        pack=pack_pb(PackEntry(pack.name, pack.path, pack.source, pack, ())),
        placeholder_value_count=counts["placeholder_values"],
        topic_count=counts["topics"],
        catchphrase_count=counts["catchphrases"],
        declined_placeholder_count=counts["declined_placeholders"],
        freeform_question_count=counts["freeform_questions"],
        combinations_log10=round(math.log10(combinations), 2) if combinations else 0.0,
        placeholders=[pb.PlaceholderSize(name=n, value_count=len(v)) for n, v in pack.placeholders.items()],
        topic_placeholder=pack.topic_placeholder,
        topics=list(pack.topics),
        catchphrases=list(pack.catchphrases),
    )


def overlap_pb(what: str, overlap: Overlap, **extra: Any) -> pb.Overlap:
    return pb.Overlap(
        what=what,
        a_count=overlap.a,
        b_count=overlap.b,
        shared_count=overlap.shared,
        only_a_count=overlap.only_a,
        only_b_count=overlap.only_b,
        jaccard=overlap.jaccard,
        **extra,
    )


def diff_pb(result: PackDiff) -> pb.DiffPacksResponse:
    styles = [
        pb.StyleComparison(id=s, a_template_count=a, b_template_count=b)
        for s, (a, b) in result.styles_both.items()
    ]
    styles += [pb.StyleComparison(id=s, a_template_count=0) for s in result.styles_only_a]
    styles += [pb.StyleComparison(id=s, b_template_count=0) for s in result.styles_only_b]
    return pb.DiffPacksResponse(
        a=pb.PackSummary(
            name=result.a.name,
            display_name=result.a.display_name,
            language=result.a.language,
            source=result.a.source,
        ),
        b=pb.PackSummary(
            name=result.b.name,
            display_name=result.b.display_name,
            language=result.b.language,
            source=result.b.source,
        ),
        sizes=[pb.SizeComparison(what=k, a=v.a, b=v.b, delta=v.delta) for k, v in result.sizes.items()],
        styles=styles,
        placeholders=[
            overlap_pb(
                name,
                row.overlap,
                present_in=row.present_in,
                examples_only_a=row.examples_only_a,
                examples_only_b=row.examples_only_b,
            )
            for name, row in result.placeholders.items()
        ],
        topics=overlap_pb("topics", result.topics),
        template_words=overlap_pb("template_words", result.template_words),
        catchphrases=overlap_pb("catchphrases", result.catchphrases),
        a_mean_template_chars=result.mean_template_chars[0],
        b_mean_template_chars=result.mean_template_chars[1],
    )


def token_stats_pb(stats: tokens.TokenStats) -> pb.TokenStats:
    return pb.TokenStats(
        encoding=stats.encoding,
        example_count=stats.examples,
        total_tokens=stats.total,
        min_tokens=stats.minimum,
        max_tokens=stats.maximum,
        mean_tokens=stats.mean,
        p50_tokens=stats.p50,
        p95_tokens=stats.p95,
    )


def summary_pb(result: DatasetResult, stats_json: str) -> pb.DatasetSummary:
    figures = result.figures
    return pb.DatasetSummary(
        out_dir=str(result.out_dir),
        files=[
            pb.DatasetFile(name=name, path=str(path), size_bytes=size, line_count=lines)
            for name, (path, size, lines) in result.files.items()
        ],
        count=figures.count,
        styles=figures.styles,
        language_error_rate=figures.language_error_rate,
        templates_used=figures.templates_used,
        train_count=figures.train_count,
        val_count=figures.val_count,
        heldout_count=figures.heldout_count,
        duplicates_removed=figures.duplicates_removed,
        llm_question_count=figures.llm_question_count,
        template_question_count=figures.template_question_count,
        tokens=token_stats_pb(figures.tokens),
        stats_json=stats_json,
        elapsed_ms=int(result.elapsed_s * 1000),
    )


def draft_summary_pb(result: DraftResult) -> pb.DraftSummary:
    figures = result.figures
    return pb.DraftSummary(
        name=result.name,
        pack_path=str(result.pack_path),
        draft_dir=str(result.draft_dir),
        report_path=str(result.report_path),
        requested_template_count=figures.requested_template_count,
        template_count=figures.template_count,
        shortfall_count=figures.shortfall_count,
        templates_per_style=figures.templates_per_style,
        question_count=figures.question_count,
        placeholder_count=len(figures.placeholder_values),
        placeholder_value_count=sum(figures.placeholder_values.values()),
        llm_request_count=figures.llm_request_count,
        cache_hit_count=figures.cache_hit_count,
        transport_retry_count=figures.transport_retry_count,
        malformed_answer_count=figures.malformed_answer_count,
        rejected_item_count=figures.rejected_item_count,
        rejected_by_reason=figures.rejected_by_reason,
        report_json=json.dumps(result.report, ensure_ascii=False),
        elapsed_ms=int(result.elapsed_s * 1000),
    )


def source_of(request: pb.ValidateDatasetRequest | pb.EstimateCostRequest, name: str = "") -> Source:
    which = request.WhichOneof("source")
    if which == "content":
        return Source(content=request.content, name=name)
    return Source(path=request.path if which == "path" else "", name=name)


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    """Thin: every decision is in GenerationCore and the modules under it."""

    def __init__(self, core: GenerationCore) -> None:
        self.core = core

    async def ListPacks(self, request: pb.ListPacksRequest, context: Any) -> pb.ListPacksResponse:
        entries = await asyncio.to_thread(self.core.packs)
        return pb.ListPacksResponse(packs=[pack_pb(e) for e in entries])

    async def DescribePack(self, request: pb.DescribePackRequest, context: Any) -> pb.DescribePackResponse:
        return pack_detail_pb(await asyncio.to_thread(self.core.pack, request.name))

    async def DiffPacks(self, request: pb.DiffPacksRequest, context: Any) -> pb.DiffPacksResponse:
        return diff_pb(await asyncio.to_thread(self.core.diff_packs, request.a, request.b))

    async def SamplePack(self, request: pb.SamplePackRequest, context: Any) -> pb.SamplePackResponse:
        samples = await asyncio.to_thread(self.core.sample_pack, request.name, request.count, request.seed)
        return pb.SamplePackResponse(
            samples=[
                pb.PackSample(
                    style=s.style,
                    topic=s.topic,
                    template_id=s.template_id,
                    question=s.question,
                    answer=s.answer,
                )
                for s in samples
            ]
        )

    async def GenerateDataset(
        self, request: pb.GenerateDatasetRequest, context: Any
    ) -> AsyncIterator[pb.GenerateDatasetResponse]:
        llm = None
        if request.question_mode == pb.QUESTION_MODE_LLM:
            llm = LlmRequest(
                base_url=request.llm.base_url,
                model=request.llm.model,
                temperature=request.llm.temperature if request.llm.HasField("temperature") else None,
                batch_size=request.llm.batch_size,
                api_key=request.llm.api_key,
            )
        builder = self.core.prepare(
            pack=request.pack,
            count=request.count,
            seed=request.seed,
            out=request.out,
            batch_size=request.batch_size if request.HasField("batch_size") else None,
            slip_probability=request.slip_probability if request.HasField("slip_probability") else None,
            val_fraction=request.val_fraction if request.HasField("val_fraction") else None,
            heldout_count=request.heldout_count if request.HasField("heldout_count") else None,
            llm=llm,
        )
        relay = ProgressRelay()
        task = self.core.start(builder, relay.report)
        async with aclosing(relay.follow(task)) as reports:
            async for progress in reports:
                yield pb.GenerateDatasetResponse(progress=progress)
        result = task.result()
        stats_json = (result.out_dir / "stats.json").read_text(encoding="utf-8")
        yield pb.GenerateDatasetResponse(summary=summary_pb(result, stats_json))

    async def ValidateDataset(
        self, request: pb.ValidateDatasetRequest, context: Any
    ) -> pb.ValidateDatasetResponse:
        source = source_of(request, request.file_name)
        result = await asyncio.to_thread(self.core.validate, source, request.out, request.model)
        report = result.report
        limit = request.max_problems or DEFAULT_MAX_PROBLEMS
        problems = report.problems
        return pb.ValidateDatasetResponse(
            line_count=report.lines,
            valid_count=len(report.valid),
            invalid_count=len(report.bad),
            problems=[
                common_pb2.LineProblem(line_number=p.line_number, reason=p.reason, field_path=p.field_path)
                for p in problems[:limit]
            ],
            problems_omitted=max(0, len(problems) - limit),
            valid_path=str(result.paths["valid"]),
            invalid_path=str(result.paths["invalid"]),
            report_path=str(result.paths["report"]),
            meets_minimum_examples=report.meets_minimum,
            warnings=report.warnings,
            tokens=token_stats_pb(result.token_stats),
        )

    async def EstimateCost(self, request: pb.EstimateCostRequest, context: Any) -> pb.EstimateCostResponse:
        result = await asyncio.to_thread(
            self.core.estimate, source_of(request), request.model, request.epochs
        )
        est = result.estimate
        return pb.EstimateCostResponse(
            model=est.model,
            price_entry=est.price.model,
            price_source=result.price_source,
            training_usd_per_million_tokens=est.price.training_usd_per_million,
            example_token_limit=est.price.example_token_limit,
            tokens=token_stats_pb(est.tokens),
            invalid_line_count=result.invalid_lines,
            examples_over_limit=est.examples_over_limit,
            billed_tokens_per_epoch=est.billed_tokens_per_epoch,
            epochs=est.epochs,
            epochs_defaulted=est.epochs_defaulted,
            billed_tokens=est.billed_tokens,
            cost_usd=est.cost_usd,
        )

    async def DraftPack(
        self, request: pb.DraftPackRequest, context: Any
    ) -> AsyncIterator[pb.DraftPackResponse]:
        spec = build_spec(
            name=request.name,
            description=request.description,
            template_count=request.template_count,
            llm=lambda: self.core.llm_config(
                LlmRequest(
                    base_url=request.llm.base_url,
                    model=request.llm.model,
                    temperature=request.llm.temperature if request.llm.HasField("temperature") else None,
                    batch_size=request.llm.batch_size,
                    api_key=request.llm.api_key,
                )
            ),
            examples=request.examples,
            language=request.language,
            style_count=request.style_count,
            malformed_retries=request.malformed_retries if request.HasField("malformed_retries") else None,
            replace=request.replace,
            fresh=request.fresh,
            satire=request.satire,
        )
        relay = ProgressRelay()
        task = self.core.start_draft(spec, relay.report)
        async with aclosing(relay.follow(task)) as reports:  # a caller that goes away stops the LLM calls
            async for progress in reports:
                yield pb.DraftPackResponse(progress=progress)
        result = task.result()
        yield pb.DraftPackResponse(summary=draft_summary_pb(result))


class GenerationCollector(Collector):
    """Runs and examples generated since the service started."""

    def __init__(self, core: GenerationCore) -> None:
        self.core = core

    def collect(self) -> Iterator[Any]:
        counts = self.core.counts
        yield CounterMetricFamily("talklike_generation_runs", "Datasets generated.", value=counts.runs)
        yield CounterMetricFamily(
            "talklike_generation_examples", "Examples written to datasets.", value=counts.examples
        )
        yield CounterMetricFamily(
            "talklike_generation_drafts", "Persona packs drafted and published.", value=counts.drafts
        )


def create_service(settings: GenerationSettings) -> ServiceBinding:
    """The generation service's binding for the shared server runtime."""
    core = GenerationCore(settings)
    servicer = GenerationServicer(core)

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_GenerationServiceServicer_to_server(servicer, server)

    async def preload_tokenizer() -> None:
        # The token table takes ~0.4 s to build; do it before readiness, not in the first request.
        await asyncio.to_thread(tokens.encoding_for, settings.token_model)

    return ServiceBinding(
        full_name=settings.full_name,
        register=register,
        on_start=[preload_tokenizer],
        collectors=[GenerationCollector(core)],
    )
