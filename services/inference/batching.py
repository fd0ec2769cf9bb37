"""The running batch of the transformers backend: one left-padded KV cache that rows join and leave.

Continuous batching on a stock transformers model: every row of the batch shares one
``DynamicCache`` whose columns are aligned on the right — a row's tokens are contiguous and end
at the last column, the columns before its first token are padding (masked out, zero keys).
A request that joins is prefilled on its own (with the other newcomers of the same step) and
its cache is concatenated to the running one, the narrower of the two padded on the left; a row
that leaves is dropped from the batch dimension, and columns that only padding still uses are
cut off. Each row keeps its own positions (RoPE), so padding never shifts a token.

Why left padding only (never a gap between a reused prefix and the rest of a prompt): the
attention masks of sliding-window layers (Gemma 3: 5 of every 6 layers, window 512) count
columns, and with the padding all on the left a row's column distances are its token
distances, so a window covers the same tokens in the batch as alone. The rebuild on a join
copies the cache once — what ``DynamicCache`` does at every decode step anyway (it grows by
concatenation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _torch() -> Any:
    import torch

    return torch


def layer_windows(cache: Any) -> list[int | None]:
    """Each layer's sliding window (None for full attention), from a cache built for the model."""
    return [
        int(layer.sliding_window) if getattr(layer, "is_sliding", False) else None for layer in cache.layers
    ]


def kept_columns(width: int, window: int | None) -> int:
    """Columns a layer holds for ``width`` columns of sequence: a sliding layer keeps its last window - 1."""
    return width if window is None else min(width, window - 1)


def fit(tensor: Any, columns: int) -> Any:
    """``tensor`` ([rows, heads, columns, dim]) with exactly ``columns`` columns: zeros added or dropped on the left."""
    have = tensor.shape[-2]
    if have == columns:
        return tensor
    if have > columns:
        return tensor[..., have - columns :, :]
    pad = tensor.new_zeros((*tensor.shape[:-2], columns - have, tensor.shape[-1]))
    return _torch().cat([pad, tensor], dim=-2)


def set_layer(layer: Any, keys: Any, values: Any, width: int) -> None:
    """Give a cache layer these keys and values, standing for ``width`` columns of sequence."""
    if not layer.is_initialized:
        layer.lazy_initialization(keys, values)
    layer.keys, layer.values = keys, values
    if hasattr(layer, "cumulative_length"):  # sliding layers count the columns they no longer hold
        layer.cumulative_length = width


def new_cache(config: Any) -> Any:
    """An empty cache with the model's layer kinds (sliding or full attention per layer)."""
    from transformers import DynamicCache

    return DynamicCache(config=config)


@dataclass
class PrefillRow:
    """A prompt to prefill, and (when the prefix cache had it) the cached KV of its first tokens."""

    ids: Sequence[int]
    #: Per layer (keys, values) of ``ids[:len(prefix)]``, each [1, heads, columns, dim]; () when none.
    prefix: Sequence[tuple[Any, Any]] = ()
    prefix_len: int = 0


@dataclass
class PrefillInputs:
    """One forward pass over several prompts: left-padded input ids with a past built from cached prefixes."""

    input_ids: Any
    mask: Any
    position_ids: Any
    cache: Any


def prefill_inputs(rows: Sequence[PrefillRow], config: Any, pad_id: int) -> PrefillInputs:
    """Inputs that prefill ``rows`` together, reusing cached prefixes with padding on the left only.

    The input is as wide as the longest *uncached* part, R. A row whose prompt is longer than R
    takes its last R tokens as input and its cached prefix up to there as past (recomputing the
    few cached tokens that fall inside the R columns costs what padding them would); a shorter
    row is padded on the left. So no row has a gap between its past and its input.
    """
    torch = _torch()
    width = max(len(r.ids) - r.prefix_len for r in rows)
    reused = [max(0, len(r.ids) - width) for r in rows]
    past = max(reused)
    cache = new_cache(config)
    windows = layer_windows(cache)
    if past:
        donor = rows[reused.index(past)].prefix
        for index, (layer, window) in enumerate(zip(cache.layers, windows, strict=True)):
            keys, values = [], []
            for row, used in zip(rows, reused, strict=True):
                # A row that reuses nothing contributes an empty piece: all padding.
                k, v = (
                    row.prefix[index] if used else (donor[index][0][..., :0, :], donor[index][1][..., :0, :])
                )
                keys.append(fit(k[..., :used, :], past))
                values.append(fit(v[..., :used, :], past))
            columns = kept_columns(past, window)
            set_layer(layer, fit(torch.cat(keys), columns), fit(torch.cat(values), columns), past)
    ids, mask = [], []
    for row, used in zip(rows, reused, strict=True):
        own = list(row.ids[used:])
        ids.append([pad_id] * (width - len(own)) + own)
        mask.append([0] * (past - used) + [1] * used + [0] * (width - len(own)) + [1] * len(own))
    mask_t = torch.tensor(mask)
    positions = (mask_t.cumsum(-1) - 1).clamp(min=0)[:, past:]
    return PrefillInputs(torch.tensor(ids), mask_t, positions, cache)


class RunningBatch:
    """The rows being decoded: their shared cache, padding mask and next positions."""

    def __init__(self, cache: Any, mask: Any, positions: Any) -> None:
        self.cache = cache
        self.mask = mask  # [rows, columns]: 1 where a row has a token
        self.positions = positions  # [rows]: the position of each row's next token
        self.windows = layer_windows(cache)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def step_inputs(self) -> tuple[Any, Any]:
        """Mask and position ids for a decode step of one token per row."""
        torch = _torch()
        mask = torch.cat([self.mask, torch.ones((self.size, 1), dtype=self.mask.dtype)], dim=-1)
        return mask, self.positions.unsqueeze(-1)

    def stepped(self, mask: Any, cache: Any) -> None:
        """Record a decode step: one more column per row."""
        self.mask, self.cache = mask, cache
        self.positions = self.positions + 1

    def extend(self, other: RunningBatch) -> None:
        """Append ``other``'s rows (after this batch's), padding the narrower cache on the left."""
        torch = _torch()
        width = max(self.width, other.width)
        for mine, theirs, window in zip(self.cache.layers, other.cache.layers, self.windows, strict=True):
            columns = kept_columns(width, window)
            keys = torch.cat([fit(mine.keys, columns), fit(theirs.keys, columns)])
            values = torch.cat([fit(mine.values, columns), fit(theirs.values, columns)])
            set_layer(mine, keys, values, width)
        self.mask = torch.cat([fit_mask(self.mask, width), fit_mask(other.mask, width)])
        self.positions = torch.cat([self.positions, other.positions])

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only these rows, and drop the leading columns that are padding in every row left."""
        torch = _torch()
        index = torch.tensor(list(indices), dtype=torch.long)
        mask = self.mask[index]
        used = mask.any(dim=0)
        first = int(used.to(torch.int8).argmax()) if bool(used.any()) else mask.shape[1]
        width = mask.shape[1] - first
        for layer, window in zip(self.cache.layers, self.windows, strict=True):
            columns = kept_columns(width, window)
            set_layer(layer, fit(layer.keys[index], columns), fit(layer.values[index], columns), width)
        self.mask = mask[:, first:]
        self.positions = self.positions[index]


def fit_mask(mask: Any, width: int) -> Any:
    """A padding mask widened to ``width`` columns with zeros on the left."""
    torch = _torch()
    missing = width - mask.shape[1]
    if not missing:
        return mask
    return torch.cat([torch.zeros((mask.shape[0], missing), dtype=mask.dtype), mask], dim=-1)
