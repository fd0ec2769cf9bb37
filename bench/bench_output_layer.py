"""The output layer on a batched prefill's last positions: a strided view vs one contiguous block.

``logits_to_keep=1`` hands the LM head ``hidden[:, -1:, :]`` of a batch of prompts — a view
whose rows lie a whole prompt apart. When the weight is frozen (as a served model's is once PEFT
wraps it) torch's matmul does not fold such a 3-D input into one 2-D product (it would have to
copy it) but multiplies it batch by batch against the weight broadcast to every row, far more
slowly; a weight that requires a gradient is folded, and fast. So the transformers backend makes
the head's input contiguous (a forward pre-hook). Gemma 3 270M's head (262,144 × 640, tied to the
embeddings), frozen, with random weights: the layer's speed does not depend on their values.
Baseline: the strided view, measured in the same run; the ratio is strided over contiguous.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

#: Gemma 3 270M: vocabulary and hidden size.
VOCABULARY = 262_144
HIDDEN = 640


def seconds(layer: Any, hidden: Any, repeats: int) -> float:
    import torch

    with torch.inference_mode():
        layer(hidden)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            layer(hidden)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=16, help="prompts prefilled together")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        layer = torch.nn.Linear(HIDDEN, VOCABULARY, bias=False).to(dtype).requires_grad_(False)
        hidden = torch.randn(args.rows, args.prompt_tokens, HIDDEN).to(dtype)
        strided = hidden[:, -1:, :]
        slow = seconds(layer, strided, 1)
        fast = seconds(layer, strided.contiguous(), 5)
        print(
            f"{name}, {args.rows} rows x {args.prompt_tokens} prompt tokens, head {VOCABULARY} x {HIDDEN}: "
            f"strided view {slow * 1000:.0f} ms, contiguous {fast * 1000:.0f} ms: {slow / fast:.1f}x"
        )


if __name__ == "__main__":
    main()
