"""The moderation service's domain core: requests in plain Python, no grpc.

Every request is checked before any work (the wrong field is named), dataset paths are
resolved inside the data home, and the backends are created here: the local classifier
once, the OpenAI client on first use (so a missing key fails the request that needs it, and
the service still starts and serves the local backend).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from talklike.common.chat_data.jsonl import iter_file_lines, split_lines
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.common.paths import file_in_home, resolve_in_home
from talklike.moderation.backends import Backend, OpenAIBackend, OpenAIStats, openai_backend
from talklike.moderation.categories import Scores, check_thresholds
from talklike.moderation.dataset import DatasetRun, ProgressCallback, check_replaceable, moderate_dataset
from talklike.moderation.evaluation import EvalReport, evaluate, load_set, select
from talklike.moderation.local import LocalBackend
from talklike.moderation.policy import Policy, make_policy
from talklike.moderation.settings import ModerationSettings

BACKENDS = ("local", "openai")
MAX_WORST = 1000
DEFAULT_WORST = 10


@dataclass(frozen=True)
class Source:
    """A JSONL file: a path inside the home, or bytes sent by the caller."""

    path: str = ""
    content: bytes | None = None
    name: str = ""


@dataclass(frozen=True)
class TextResults:
    """Moderate's answer."""

    results: list[Scores]
    backend: str
    model: str
    thresholds: dict[str, float]


@dataclass(frozen=True)
class PreparedRun:
    """A checked dataset request, ready to run."""

    lines: Iterable[tuple[int, bytes]]
    file_name: str
    out_dir: Path
    backend: Backend
    policy: Policy
    worst_count: int


#: The largest labelled set EvaluateBackend reads.
MAX_EVAL_SET_BYTES = 16 << 20


@dataclass(frozen=True)
class BackendEvaluation:
    """A backend's precision and recall on a labelled set: who scored, and the confusion counts."""

    backend: str
    model: str
    report: EvalReport


@dataclass
class ModerationCore:
    """What the RPCs do."""

    settings: ModerationSettings
    local: LocalBackend = field(default_factory=LocalBackend)
    #: Output directories being written now; a second run into one is refused.
    busy: set[Path] = field(default_factory=set)
    _openai: OpenAIBackend | None = None
    texts_moderated: int = 0
    datasets_moderated: int = 0

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    def backend(self, name: str) -> Backend:
        """The backend by name ("" = the service's default)."""
        chosen = name or self.settings.backend
        if chosen == "local":
            return self.local
        if chosen == "openai":
            if self._openai is None:
                self._openai = openai_backend(self.settings)
            return self._openai
        raise InvalidArgument("backend", f"must be one of {', '.join(BACKENDS)}, got {name!r}")

    def openai_stats(self) -> OpenAIStats:
        """The OpenAI backend's counters (zero until it is first used)."""
        return self._openai.stats if self._openai is not None else OpenAIStats()

    async def close(self) -> None:
        if self._openai is not None:
            await self._openai.close()

    def check_texts(self, texts: Sequence[str]) -> None:
        """InvalidArgument for an empty batch, one over the limit, or a text too long."""
        limit = self.settings.max_batch_texts
        if not texts:
            raise InvalidArgument("texts", "the batch is empty; send 1 or more texts")
        if len(texts) > limit:
            raise InvalidArgument("texts", f"{len(texts)} texts is over the limit of {limit} per request")
        longest = self.settings.max_text_chars
        for i, text in enumerate(texts):
            if len(text) > longest:
                raise InvalidArgument(f"texts[{i}]", f"{len(text)} characters is over the limit of {longest}")

    async def evaluate_backend(self, backend: str, split: str, lang: str, set_path: str) -> BackendEvaluation:
        """Precision and recall of ``backend`` on the shipped labelled set (or ``set_path`` in the data home)."""
        path = file_in_home(self.home, set_path, "set_path") if set_path else None
        if path is not None and path.stat().st_size > MAX_EVAL_SET_BYTES:
            raise InvalidArgument("set_path", f"the set is over {MAX_EVAL_SET_BYTES // (1 << 20)} MiB")
        texts = select(load_set(path, "set_path"), split, lang)
        if not texts:
            raise InvalidArgument("split", "no labelled texts match the split and language; widen them")
        longest = self.settings.max_text_chars
        for item in texts:
            if len(item.text) > longest:
                raise InvalidArgument(
                    "set_path", f"text {item.id!r} is over the limit of {longest} characters"
                )
        chosen = self.backend(backend)
        results = await chosen.classify([t.text for t in texts])
        report = evaluate(texts, [r.flags for r in results], [r.scores for r in results])
        return BackendEvaluation(chosen.name, chosen.model, report)

    async def moderate(
        self, texts: Sequence[str], backend: str, thresholds: Mapping[str, float]
    ) -> TextResults:
        """Scores for each text, and the thresholds applied (the request's over the defaults)."""
        self.check_texts(texts)
        merged = check_thresholds(thresholds, "thresholds")
        chosen = self.backend(backend)
        results = await chosen.classify(list(texts))
        self.texts_moderated += len(texts)
        return TextResults(results, chosen.name, chosen.model, merged)

    def _out_dir(self, out: str, source: Source, source_path: Path | None) -> Path:
        raw = out.strip()
        if not raw:
            if source_path is not None:
                return source_path.parent / "moderated"
            stem = Path(source.name or "upload.jsonl").stem or "upload"
            raw = f"{stem}-moderated"
        path = Path(raw)
        if (
            not path.is_absolute()
            and not raw.startswith("~")
            and (not path.parts or path.parts[0] != "datasets")
        ):
            raw = str(Path("datasets") / raw)
        resolved = resolve_in_home(self.home, raw, "out")
        if resolved in (self.home, (self.home / "datasets").resolve()):
            raise InvalidArgument(
                "out", "must name a directory for this run, not the data home or datasets/ itself"
            )
        return resolved

    def prepare(
        self,
        source: Source,
        *,
        out: str = "",
        backend: str = "",
        thresholds: Mapping[str, float] | None = None,
        roles: Sequence[str] = (),
        action: str = "",
        flagged_share_limit: float | None = None,
        worst_count: int = 0,
    ) -> PreparedRun:
        """Check everything a dataset request says before any work: fields, paths, backend, output directory."""
        policy = make_policy(
            thresholds or {}, roles, action, flagged_share_limit, self.settings.flagged_share_limit
        )
        if not 0 <= worst_count <= MAX_WORST:
            raise InvalidArgument(
                "worst_example_count", f"must be between 0 and {MAX_WORST}, got {worst_count}"
            )
        if source.content is None and not source.path:
            raise InvalidArgument("source", "give the file's path (inside the data home) or its content")
        source_path: Path | None = None
        lines: Iterable[tuple[int, bytes]]
        if source.content is not None:
            lines = split_lines(source.content)
            name = source.name or "upload.jsonl"
        else:
            source_path = file_in_home(self.home, source.path, "path")
            lines = iter_file_lines(source_path)
            name = source.name or source_path.name
        out_dir = self._out_dir(out, source, source_path)
        check_replaceable(out_dir)
        chosen = self.backend(backend)
        return PreparedRun(lines, name, out_dir, chosen, policy, worst_count or DEFAULT_WORST)

    def start(self, run: PreparedRun, on_progress: ProgressCallback) -> asyncio.Task[DatasetRun]:
        """Start a prepared run as a task; one run at a time per output directory."""
        if run.out_dir in self.busy:
            raise FailedPrecondition(
                f"another run is writing {run.out_dir} right now; wait for it or choose another out"
            )
        self.busy.add(run.out_dir)

        async def work() -> DatasetRun:
            result = await moderate_dataset(
                run.lines,
                file_name=run.file_name,
                out_dir=run.out_dir,
                backend=run.backend,
                policy=run.policy,
                worst_count=run.worst_count,
                on_progress=on_progress,
            )
            self.datasets_moderated += 1
            self.texts_moderated += result.texts
            return result

        task = asyncio.create_task(work())
        task.add_done_callback(lambda _: self.busy.discard(run.out_dir))
        return task
