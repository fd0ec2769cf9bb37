"""One dataset run: answers → questions → examples → split → held-out set → files.

The files of a run land together: everything is written into a temporary directory beside
the target, which then takes the target's place (the previous dataset, if any, is moved
aside and removed only after the swap), so a reader sees either the old dataset or the new
one, never a mix or a truncated file. ``stats.json`` holds no timings, so the same request
gives byte-identical files.

Layout of ``<out>/``: ``all.jsonl`` (every example, OpenAI chat format), ``train.jsonl``,
``val.jsonl``, ``heldout.jsonl`` (benchmark questions whose wording no example uses, each
with a reference answer), ``meta.jsonl`` (line by line beside ``all.jsonl``: style, topic,
template, question template, slip, split), ``invalid/rejected.jsonl`` (drawn answers that
were duplicates, with the reason), ``invalid/llm_replies.jsonl`` (malformed LLM replies) and
``stats.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talklike.common.chat_data import folders
from talklike.common.chat_data.jsonl import check_record
from talklike.common.disk_space import check_room
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.common.paths import resolve_in_home
from talklike.generation import tokens
from talklike.generation.dedupe import DuplicateIndex, fold
from talklike.generation.engine import Answer, AnswerGenerator, Rejected
from talklike.generation.llm import LlmConfig, LlmQuestionWriter, LlmStats, ResponseCache
from talklike.generation.questions import QuestionPicker, split_question_pool
from talklike.packs.loader import Pack

MAX_COUNT = 1_000_000
MAX_BATCH_SIZE = 1_000_000
MAX_HELDOUT = 100_000
MAX_VAL_FRACTION = 0.5
DEFAULT_BATCH_SIZE = 300
DEFAULT_SLIP_PROBABILITY = 0.15
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_HELDOUT = 50
#: Marks a directory as a talklike dataset, which a new run may replace.
DATASET_MARKER = "talklike_dataset"
FILES = ("all.jsonl", "train.jsonl", "val.jsonl", "heldout.jsonl", "meta.jsonl", "stats.json")


@dataclass(frozen=True)
class DatasetSpec:
    """A validated request for one dataset."""

    pack: Pack
    count: int
    seed: int
    out_dir: Path
    batch_size: int = DEFAULT_BATCH_SIZE
    slip_probability: float = DEFAULT_SLIP_PROBABILITY
    val_fraction: float = DEFAULT_VAL_FRACTION
    heldout_count: int = DEFAULT_HELDOUT
    llm: LlmConfig | None = None
    #: Model whose tokenizer the token statistics use.
    token_model: str = "gpt-4o-mini-2024-07-18"


def validate_numbers(
    count: int, batch_size: int, slip_probability: float, val_fraction: float, heldout_count: int
) -> None:
    """InvalidArgument naming the first field out of range."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidArgument("count", f"must be between 1 and {MAX_COUNT:,}, got {count}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidArgument(
            "batch_size", f"must be at least 1 (and at most {MAX_BATCH_SIZE:,}), got {batch_size}"
        )
    if not (math.isfinite(slip_probability) and 0.0 <= slip_probability <= 1.0):
        raise InvalidArgument(
            "slip_probability", f"must be a probability between 0 and 1, got {slip_probability}"
        )
    if not (math.isfinite(val_fraction) and 0.0 <= val_fraction <= MAX_VAL_FRACTION):
        raise InvalidArgument("val_fraction", f"must be between 0 and {MAX_VAL_FRACTION}, got {val_fraction}")
    if not 0 <= heldout_count <= MAX_HELDOUT:
        raise InvalidArgument("heldout_count", f"must be between 0 and {MAX_HELDOUT:,}, got {heldout_count}")


def resolve_out(home: Path, raw: str, default_name: str) -> Path:
    """Where a dataset goes: a relative path lies under ``<home>/datasets``; absolute ones must be in the home."""
    raw = raw.strip() or default_name
    if not os.path.isabs(raw) and not raw.startswith("~"):
        parts = Path(raw).parts
        if not parts or parts[0] != "datasets":
            raw = str(Path("datasets") / raw)
    out = resolve_in_home(home, raw, "out")
    if out == home.resolve() or out == (home / "datasets").resolve():
        raise InvalidArgument(
            "out", "must name a directory for this dataset, not the data home or datasets/ itself"
        )
    return out


def check_replaceable(out_dir: Path) -> None:
    """AlreadyExists when ``out_dir`` holds something that is not a talklike dataset."""
    folders.check_replaceable(out_dir, "stats.json", DATASET_MARKER, "a talklike dataset")


@dataclass
class Example:
    """One example with what stats and meta.jsonl need."""

    answer: Answer
    question: str
    question_id: str
    question_source: str

    def messages(self, system: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": self.question},
            {"role": "assistant", "content": self.answer.text},
        ]


@dataclass
class DatasetFigures:
    """A run's headline numbers, typed (the summary a caller gets; stats.json holds them all)."""

    count: int
    #: Examples per style id, in the pack's order.
    styles: dict[str, int]
    language_error_rate: float
    templates_used: int
    train_count: int
    val_count: int
    heldout_count: int
    duplicates_removed: int
    llm_question_count: int
    template_question_count: int
    #: Tokens of every example.
    tokens: tokens.TokenStats


@dataclass
class DatasetResult:
    """What a run produced."""

    out_dir: Path
    files: dict[str, tuple[Path, int, int]]
    figures: DatasetFigures
    #: stats.json's content, as written.
    stats: dict[str, Any]
    elapsed_s: float


ProgressCallback = Callable[[str, int, int], Awaitable[None]]


async def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def _dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


@dataclass
class DatasetBuilder:
    """Builds one dataset; the steps are separate so benchmarks can time them in-process."""

    spec: DatasetSpec
    cache_dir: Path | None = None
    rejected: list[Rejected] = field(default_factory=list)
    llm_invalid: list[dict[str, Any]] = field(default_factory=list)
    llm_stats: LlmStats | None = None

    def __post_init__(self) -> None:
        spec = self.spec
        if spec.slip_probability > 0 and not spec.pack.slips:
            raise InvalidArgument(
                "slip_probability",
                f"pack {spec.pack.name!r} has no slip rules; use 0 or add slips.yaml rules",
            )
        self.index = DuplicateIndex()
        self.train_pool, self.heldout_pool = split_question_pool(spec.pack, spec.seed, spec.heldout_count > 0)
        self.picker = QuestionPicker(
            spec.pack, self.train_pool, random.Random(f"talklike-questions:{spec.seed}")
        )
        self.generator = AnswerGenerator(
            spec.pack,
            spec.seed,
            slip_probability=spec.slip_probability,
            batch_size=spec.batch_size,
            index=self.index,
            on_reject=self.rejected.append,
        )

    # --- steps -------------------------------------------------------------------------

    async def answers(self, on_progress: ProgressCallback = _no_progress) -> list[Answer]:
        out: list[Answer] = []
        for batch in self.generator.batches(self.spec.count):
            out.extend(batch)
            await on_progress("answers", len(out), self.spec.count)
        return out

    def template_questions(self, answers: list[Answer]) -> list[Example]:
        examples = []
        for answer in answers:
            question, question_id = self.picker.question_for(answer)
            examples.append(Example(answer, question, question_id, "template"))
        return examples

    async def questions(
        self, answers: list[Answer], on_progress: ProgressCallback = _no_progress
    ) -> list[Example]:
        llm = self.spec.llm
        if llm is None:
            examples: list[Example] = []
            step = self.spec.batch_size
            for start in range(0, len(answers), step):
                examples.extend(self.template_questions(answers[start : start + step]))
                await on_progress("questions", len(examples), len(answers))
            return examples
        cache = ResponseCache(self.cache_dir or self.spec.out_dir.parent / ".llm-cache")
        writer = LlmQuestionWriter(llm, cache, self.spec.pack)
        done = 0

        async def advance(n: int) -> None:
            nonlocal done
            done += n
            await on_progress("questions", done, len(answers))

        written = await writer.write(answers, advance)
        self.llm_stats = writer.stats
        self.llm_invalid = writer.invalid
        examples = []
        for answer, question in zip(answers, written, strict=True):
            if question is None:
                text, question_id = self.picker.question_for(answer)
                examples.append(Example(answer, text, question_id, "template-fallback"))
            else:
                examples.append(Example(answer, question, "", "llm"))
        return examples

    def split(self, count: int) -> set[int]:
        """Indexes of the validation examples (seeded; train keeps at least one example)."""
        if self.spec.val_fraction <= 0 or count < 2:
            return set()
        n_val = min(count - 1, max(1, round(count * self.spec.val_fraction)))
        return set(random.Random(f"talklike-split:{self.spec.seed}").sample(range(count), n_val))

    def heldout(self, examples: list[Example]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Benchmark questions that no example uses, each with a fresh reference answer."""
        spec = self.spec
        pack = spec.pack
        wanted = spec.heldout_count
        info: dict[str, Any] = {
            "requested": wanted,
            "question_templates": sorted(q.id for q in self.heldout_pool),
        }
        if wanted == 0:
            info.update(count=0, disjoint_templates=True, shares_questions_with_examples=False)
            return [], info
        used = {fold(e.question) for e in examples}
        disjoint = bool(self.heldout_pool)
        pool = self.heldout_pool or list(pack.questions)
        picker = QuestionPicker(pack, pool, random.Random(f"talklike-heldout-questions:{spec.seed}"))
        generator = AnswerGenerator(
            pack,
            spec.seed,
            slip_probability=spec.slip_probability,
            batch_size=spec.batch_size,
            index=self.index,
            rng=random.Random(f"talklike-heldout:{spec.seed}"),
        )
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        try:
            generator.batch_size = min(spec.batch_size, wanted)
            for batch in generator.batches(20 * wanted, label_prefix="heldout "):
                if len(rows) >= wanted:
                    break
                for answer in batch:
                    if len(rows) >= wanted:
                        break
                    question, question_id = picker.question_for(answer)
                    folded = fold(question)
                    if not question or folded in used or folded in seen:
                        continue
                    seen.add(folded)
                    rows.append(
                        {
                            "id": f"heldout-{len(rows) + 1:05d}",
                            "question": question,
                            "topic": answer.topic,
                            "style": answer.style,
                            "question_template": question_id,
                            "reference": answer.text,
                            "messages": [
                                {"role": "system", "content": pack.system_prompt},
                                {"role": "user", "content": question},
                            ],
                        }
                    )
        except FailedPrecondition:
            pass  # the pack has no more distinct answers: keep the questions found so far
        info.update(
            count=len(rows),
            disjoint_templates=disjoint,
            shares_questions_with_examples=False,
        )
        if len(rows) < wanted:
            info["short_by"] = wanted - len(rows)
        return rows, info

    # --- the whole run -----------------------------------------------------------------

    async def run(self, on_progress: ProgressCallback = _no_progress) -> DatasetResult:
        started = time.perf_counter()
        spec = self.spec
        answers = await self.answers(on_progress)
        examples = await self.questions(answers, on_progress)
        heldout_rows, heldout_info = self.heldout(examples)
        await on_progress("heldout", len(heldout_rows), spec.heldout_count)
        val = self.split(len(examples))
        system = spec.pack.system_prompt
        messages = [e.messages(system) for e in examples]
        for number, record in enumerate(messages, start=1):
            problems = check_record({"messages": record})
            if problems:
                path, reason = problems[0]
                raise FailedPrecondition(
                    f"generated example {number} fails the chat format at {path}: {reason}"
                )
        enc = tokens.encoding_for(spec.token_model)
        counts = tokens.count_many(enc, messages)
        figures, stats = self.stats(examples, counts, val, heldout_info, enc.name)
        files = self.write(examples, messages, val, heldout_rows, stats)
        await on_progress("write", len(files), len(files))
        return DatasetResult(spec.out_dir, files, figures, stats, time.perf_counter() - started)

    def stats(
        self,
        examples: list[Example],
        counts: list[int],
        val: set[int],
        heldout_info: dict[str, Any],
        encoding_name: str,
    ) -> tuple[DatasetFigures, dict[str, Any]]:
        """The run's headline figures, and stats.json's content (which repeats them among the rest)."""
        spec = self.spec
        pack = spec.pack
        n = len(examples)
        styles = Counter(e.answer.style for e in examples)
        slips = Counter(e.answer.slip_id for e in examples if e.answer.slip_id)
        sources = Counter(e.question_source for e in examples)
        near = sum(1 for r in self.rejected if r.reason.startswith("near"))
        train_counts = [c for i, c in enumerate(counts) if i not in val]
        val_counts = [c for i, c in enumerate(counts) if i in val]
        figures = DatasetFigures(
            count=n,
            styles={s: styles.get(s, 0) for s in pack.style_ids},
            language_error_rate=round(sum(slips.values()) / n, 4),
            templates_used=len({e.answer.template_id for e in examples}),
            train_count=n - len(val),
            val_count=len(val),
            heldout_count=heldout_info["count"],
            duplicates_removed=len(self.rejected),
            llm_question_count=sources.get("llm", 0),
            template_question_count=sources.get("template", 0) + sources.get("template-fallback", 0),
            tokens=tokens.TokenStats.of(encoding_name, counts),
        )
        return figures, {
            DATASET_MARKER: 1,
            "pack": {
                "name": pack.name,
                "digest": pack.digest,
                "language": pack.language,
                "signature": pack.signature,
            },
            "seed": spec.seed,
            "count": figures.count,
            "batch_size": spec.batch_size,
            "slip_probability": spec.slip_probability,
            "val_fraction": spec.val_fraction,
            "styles": figures.styles,
            "style_shares": {s: round(styles.get(s, 0) / n, 4) for s in pack.style_ids},
            "language_error_rate": figures.language_error_rate,
            "slips": dict(sorted(slips.items())),
            "templates_used": figures.templates_used,
            "templates_available": len(pack.templates),
            "topics": dict(sorted(Counter(e.answer.topic for e in examples).items())),
            "signature_endings": sum(1 for e in examples if e.answer.text.endswith("\n" + pack.signature)),
            "questions": {
                "mode": "llm" if spec.llm is not None else "templates",
                "templates_used": len({e.question_id for e in examples if e.question_id}),
                "from_llm": figures.llm_question_count,
                "from_templates": figures.template_question_count,
                "llm": self.llm_stats.as_dict() if self.llm_stats is not None else None,
            },
            "duplicates_removed": {"exact": len(self.rejected) - near, "near": near},
            "split": {
                "train": figures.train_count,
                "val": figures.val_count,
                "heldout": figures.heldout_count,
            },
            "heldout": heldout_info,
            "tokens": {
                "model": spec.token_model,
                "all": figures.tokens.as_dict(),
                "train": tokens.TokenStats.of(encoding_name, train_counts).as_dict(),
                "val": tokens.TokenStats.of(encoding_name, val_counts).as_dict(),
            },
            "invalid": {"rejected_answers": len(self.rejected), "llm_replies": len(self.llm_invalid)},
        }

    def write(
        self,
        examples: list[Example],
        messages: list[list[dict[str, str]]],
        val: set[int],
        heldout_rows: list[dict[str, Any]],
        stats: dict[str, Any],
    ) -> dict[str, tuple[Path, int, int]]:
        """All files into a temporary directory, then swapped into place; (path, bytes, lines) per file."""
        out = self.spec.out_dir
        check_replaceable(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            lines = [_dumps({"messages": m}) + "\n" for m in messages]
            train = [line for i, line in enumerate(lines) if i not in val]
            valid = [line for i, line in enumerate(lines) if i in val]
            meta = [
                _dumps(
                    {
                        "line": i + 1,
                        "style": e.answer.style,
                        "topic": e.answer.topic,
                        "template": e.answer.template_id,
                        "question_template": e.question_id,
                        "question_source": e.question_source,
                        "slip": e.answer.slip_id,
                        "split": "val" if i in val else "train",
                    }
                )
                + "\n"
                for i, e in enumerate(examples)
            ]
            contents: dict[str, list[str]] = {
                "all.jsonl": lines,
                "train.jsonl": train,
                "val.jsonl": valid,
                "heldout.jsonl": [_dumps(row) + "\n" for row in heldout_rows],
                "meta.jsonl": meta,
                "invalid/rejected.jsonl": [
                    _dumps(
                        {"slot": r.slot + 1, "template": r.template_id, "reason": r.reason, "text": r.text}
                    )
                    + "\n"
                    for r in self.rejected
                ],
                "invalid/llm_replies.jsonl": [_dumps(r) + "\n" for r in self.llm_invalid],
            }
            written: dict[str, tuple[Path, int, int]] = {}
            (tmp / "invalid").mkdir()
            encoded = {name: "".join(body).encode("utf-8") for name, body in contents.items()}
            stats_text = json.dumps(stats, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            check_room(tmp, sum(map(len, encoded.values())) + len(stats_text), f"dataset {out.name}")
            for name, body in contents.items():
                data = encoded[name]
                (tmp / name).write_bytes(data)
                written[name] = (out / name, len(data), len(body))
            (tmp / "stats.json").write_text(stats_text, encoding="utf-8")
            written["stats.json"] = (
                out / "stats.json",
                len(stats_text.encode("utf-8")),
                stats_text.count("\n"),
            )
            folders.fsync_tree(tmp)
            folders.swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return written
