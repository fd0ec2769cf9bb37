"""The generation service's domain core: requests in plain Python, no grpc.

It checks every request before doing work (the field that is wrong is named), resolves
paths inside the data home, and runs the domain modules. The servicer only translates.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talklike.common.chat_data.jsonl import (
    BadLine,
    ValidationReport,
    iter_file_lines,
    split_lines,
    validate_lines,
    write_outputs,
)
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.common.paths import file_in_home
from talklike.generation import tokens
from talklike.generation.dataset import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_HELDOUT,
    DEFAULT_SLIP_PROBABILITY,
    DEFAULT_VAL_FRACTION,
    DatasetBuilder,
    DatasetResult,
    DatasetSpec,
    ProgressCallback,
    check_replaceable,
    resolve_out,
    validate_numbers,
)
from talklike.generation.drafting.drafter import Drafter
from talklike.generation.drafting.review import PackDiff, Sample, diff, sample
from talklike.generation.drafting.spec import DraftResult, DraftSpec, check_target
from talklike.generation.drafting.state import ProgressCallback as DraftProgress
from talklike.generation.endpoints import allowed_urls, choose_endpoint
from talklike.generation.llm import LlmConfig
from talklike.generation.settings import GenerationSettings
from talklike.packs.loader import Pack, PackEntry, list_packs, load_pack

DEFAULT_MAX_PROBLEMS = 1000


@dataclass(frozen=True)
class LlmRequest:
    """LLM options as a request gives them (None/0 = the service's settings)."""

    base_url: str
    model: str
    temperature: float | None = None
    batch_size: int = 0
    #: The caller's own key, sent only to an endpoint outside the allowed ones.
    api_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Source:
    """A JSONL file: a path inside the home, or bytes sent by the caller."""

    path: str = ""
    content: bytes | None = None
    name: str = ""


@dataclass
class ValidationResult:
    """ValidateDataset's answer."""

    report: ValidationReport
    paths: dict[str, Path]
    token_stats: tokens.TokenStats
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class CostResult:
    """EstimateCost's answer."""

    estimate: tokens.CostEstimate
    price_source: str
    invalid_lines: int


@dataclass
class GenerationCounts:
    """What the service has made since it started (its Prometheus counters)."""

    runs: int = 0
    examples: int = 0
    drafts: int = 0


@dataclass
class GenerationCore:
    """What the RPCs do, and the state they share: the runs and drafts in progress, the counts."""

    settings: GenerationSettings
    #: Output directories being written by a run now; a second run into one is refused.
    busy: set[Path] = field(default_factory=set)
    #: Pack names being drafted now; a second draft of one is refused.
    drafting: set[str] = field(default_factory=set)
    counts: GenerationCounts = field(default_factory=GenerationCounts)

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    def packs(self) -> list[PackEntry]:
        return list_packs(self.home)

    def pack(self, name: str) -> Pack:
        """The pack ``name`` (built-in or under the home): NotFound, or PackInvalid with its problems."""
        return load_pack(name, self.home)

    def diff_packs(self, a: str, b: str) -> PackDiff:
        """Packs ``a`` and ``b`` side by side (sizes, styles, vocabularies)."""
        return diff(self.pack(a), self.pack(b))

    def sample_pack(self, name: str, count: int, seed: int) -> list[Sample]:
        """``count`` examples of pack ``name`` drawn as a dataset run draws them."""
        return sample(self.pack(name), count, seed, field_name="count")

    def prepare(
        self,
        *,
        pack: str,
        count: int,
        seed: int,
        out: str = "",
        batch_size: int | None = None,
        slip_probability: float | None = None,
        val_fraction: float | None = None,
        heldout_count: int | None = None,
        llm: LlmRequest | None = None,
    ) -> DatasetBuilder:
        """A ready-to-run builder; every bad field raises before any work is done."""
        batch = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        slip = DEFAULT_SLIP_PROBABILITY if slip_probability is None else slip_probability
        val = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        heldout = DEFAULT_HELDOUT if heldout_count is None else heldout_count
        validate_numbers(count, batch, slip, val, heldout)
        llm_config = self.llm_config(llm) if llm is not None else None
        loaded = load_pack(pack, self.home)
        out_dir = resolve_out(self.home, out, f"{loaded.name}-{count}-s{seed}")
        check_replaceable(out_dir)  # refuse before the work, not after it
        spec = DatasetSpec(
            pack=loaded,
            count=count,
            seed=seed,
            out_dir=out_dir,
            batch_size=batch,
            slip_probability=slip,
            val_fraction=val,
            heldout_count=heldout,
            llm=llm_config,
            token_model=self.settings.token_model,
        )
        return DatasetBuilder(spec, cache_dir=self.home / "cache" / "llm")

    def start(self, builder: DatasetBuilder, on_progress: ProgressCallback) -> asyncio.Task[DatasetResult]:
        """Start a prepared run as a task; one run at a time per output directory (checked now)."""
        out_dir = builder.spec.out_dir
        if out_dir in self.busy:
            raise FailedPrecondition(
                f"another run is writing {out_dir} right now; wait for it or choose another out"
            )
        self.busy.add(out_dir)
        task = asyncio.create_task(builder.run(on_progress))

        def finished(done: asyncio.Task[DatasetResult]) -> None:
            self.busy.discard(out_dir)
            if not done.cancelled() and done.exception() is None:
                self.counts.runs += 1
                self.counts.examples += done.result().figures.count

        task.add_done_callback(finished)
        return task

    def start_draft(self, spec: DraftSpec, on_progress: DraftProgress) -> asyncio.Task[DraftResult]:
        """Start drafting ``spec`` as a task; a taken name, or one being drafted now, is refused first."""
        check_target(self.home, spec.name, spec.replace)
        if spec.name in self.drafting:
            raise FailedPrecondition(f"pack {spec.name!r} is being drafted right now; wait for that draft")
        self.drafting.add(spec.name)
        task = asyncio.create_task(Drafter(spec, self.home, on_progress).run())

        def finished(done: asyncio.Task[DraftResult]) -> None:
            self.drafting.discard(spec.name)
            if not done.cancelled() and done.exception() is None:
                self.counts.drafts += 1

        task.add_done_callback(finished)
        return task

    def llm_config(self, llm: LlmRequest) -> LlmConfig:
        """The LLM settings of a request: its endpoint checked against the allowed ones, the service's defaults."""
        s = self.settings
        endpoint = choose_endpoint(
            llm.base_url,
            llm.api_key,
            allowed_urls(s.llm_base_urls),
            os.environ.get(s.llm_api_key_env, ""),
            others_allowed=s.llm_other_endpoints,
        )
        if not llm.model.strip():
            raise InvalidArgument("llm.model", "LLM mode needs a model name")
        temperature = s.llm_temperature if llm.temperature is None else llm.temperature
        if not (math.isfinite(temperature) and 0 <= temperature <= 2):
            raise InvalidArgument("llm.temperature", f"must be between 0 and 2, got {temperature}")
        if not 0 <= llm.batch_size <= 100:
            raise InvalidArgument(
                "llm.batch_size", f"must be between 1 and 100 (0 = default), got {llm.batch_size}"
            )
        return LlmConfig(
            base_url=endpoint.base_url,
            model=llm.model.strip(),
            api_key=endpoint.api_key,
            temperature=temperature,
            max_tokens=s.llm_max_tokens,
            batch_size=llm.batch_size or s.llm_batch_size,
            concurrency=s.llm_concurrency,
            max_retries=s.llm_max_retries,
            backoff_s=s.llm_backoff_s,
            timeout_s=s.llm_timeout_s,
            malformed_retries=s.llm_malformed_retries,
        )

    # --- files from requests -----------------------------------------------------------

    def _lines(self, source: Source) -> tuple[Iterable[tuple[int, bytes]], str]:
        if source.content is not None:
            return split_lines(source.content), source.name or "upload.jsonl"
        path = file_in_home(self.home, source.path, "path")
        return iter_file_lines(path), source.name or path.name

    def validate(self, source: Source, out: str = "", model: str = "") -> ValidationResult:
        """Judge every line, quarantine the bad ones, keep the good ones, count tokens."""
        enc = tokens.encoding_for(model or self.settings.token_model)
        if source.content is None and not source.path:
            raise InvalidArgument("source", "give the file's path (inside the data home) or its content")
        lines, name = self._lines(source)
        stem = Path(name).stem or "upload"
        out_dir = resolve_out(self.home, out, f"{stem}-validated")
        report = validate_lines(lines)
        counts = tokens.count_many(enc, [line.messages for line in report.valid])
        stats = tokens.TokenStats.of(enc.name, counts)
        summary = {
            "file": name,
            "lines": report.lines,
            "valid": len(report.valid),
            "invalid": len(report.bad),
            "meets_minimum_examples": report.meets_minimum,
            "warnings": report.warnings,
            "tokens": stats.as_dict(),
            "problems": [row for bad in report.bad for row in _problem_rows(bad)],
        }
        paths = write_outputs(report, out_dir, summary)
        return ValidationResult(report, paths, stats, summary)

    def estimate(self, source: Source, model: str, epochs: int) -> CostResult:
        """The fine-tuning bill of the valid lines of a file."""
        if not model.strip():
            raise InvalidArgument("model", "name the model to fine-tune, e.g. gpt-4o-mini-2024-07-18")
        if not 0 <= epochs <= 50:
            raise InvalidArgument("epochs", f"must be between 1 and 50 (0 = OpenAI's default), got {epochs}")
        table, price_source = tokens.load_price_table(self.settings.price_table_file)
        tokens.price_for(model, table)  # an unknown model fails before the file is read
        enc = tokens.encoding_for(model)
        if source.content is None and not source.path:
            raise InvalidArgument("source", "give the file's path (inside the data home) or its content")
        lines, _name = self._lines(source)
        report = validate_lines(lines)
        counts = tokens.count_many(enc, [line.messages for line in report.valid])
        return CostResult(
            tokens.estimate(model.strip(), counts, epochs, table), price_source, len(report.bad)
        )


def _problem_rows(bad: BadLine) -> Iterator[dict[str, Any]]:
    for problem in bad.problems:
        yield {"line_number": problem.line_number, "field_path": problem.field_path, "reason": problem.reason}
