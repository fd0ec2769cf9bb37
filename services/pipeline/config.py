"""The pipeline's settings: one dataclass, whose defaults are the demo's and the CLI's.

Kept apart from the stages (which speak gRPC) so that the CLI can show these defaults in
``--help`` without importing a client.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Settings of the benchmark alone: changing them re-runs the evaluation, not the training.
EVAL_ONLY = frozenset(
    {
        "eval_questions",
        "freeform_questions",
        "max_new_tokens",
        "eval_concurrency",
        "eval_temperature",
        "eval_top_k",
        "eval_repetition_penalty",
        "eval_presence_penalty",
        "eval_frequency_penalty",
    }
)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the stages depend on (it is part of their fingerprints)."""

    pack: str = "babis"
    # Chosen by measurement (README, "What make demo shows"): SmolLM2-135M is an English model and
    # its tuned Czech was loops and word salad; Gemma 3 270M writes Czech before tuning already.
    base_model: str = "gemma3-270m"
    count: int = 600
    seed: int = 42
    # 540 examples, batch 4: 160 steps is about 1.2 passes. At 120 steps (less than one pass) the
    # validation loss was still falling and persona markers stayed under half of the answers (49 %); at
    # 200 they reached 68 % but the demo ran 17 min; at 240 openings collapsed onto "to je jako" (23-29 %).
    # With the 79-topic pack: 140 steps 39 % markers (72 % on topic), 160 steps 62 % (70 %); 900 examples
    # instead of 600 at 160 steps: 53 % (67 %). The validation loss still falls at the last step.
    # On a CPU with bf16 instructions a step takes 1.35-1.5x less time than in fp32 (auto precision).
    max_steps: int = 160
    # Gemma 3 270M, 120 steps: 5e-4 answered on topic more often than 1e-3 (61 % vs 56 % of the free-form
    # questions) at the same signature, markers and loop rates (README). With the 79-topic pack at 160
    # steps, 3.5e-4 gave markers 50 % and on topic 71 % against 5e-4's 62 % and 70 %.
    learning_rate: float = 5e-4
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_sequence_tokens: int = 256
    lora_r: int = 16
    lora_alpha: float = 32.0
    # A validation pass (it keeps the adapter if it is the best so far) every this many steps and at
    # the end; `early_stopping_patience` passes in a row without a lower loss stop the training. The
    # demo's 160 steps validate twice: validating every 40 steps, the loss fell at each pass (2.83, 2.56,
    # 2.41, 2.34), the last was always the best, and each pass with its checkpoint took about 20 s.
    validation_interval_steps: int = 80
    early_stopping_patience: int = 2
    #: Template-held-out questions asked (0 = all of heldout.jsonl); the pack's free-form questions too.
    eval_questions: int = 30
    freeform_questions: bool = True
    # The babis training answers run to 50 tokens (median), 60 (p90), 79 at most, the signature
    # included: at 64 a well-trained adapter's longer answers were cut before their signature (5-7 % of
    # them at 240 steps). The untuned base model never ends its turn and always runs to the limit, so
    # the limit is most of the benchmark's time.
    max_new_tokens: int = 80
    # How both sides answer (the same seed for both). Greedy decoding opened half the tuned answers
    # with the same three words whatever the question; a little sampling answers like a chat does.
    # repetition_penalty covers the prompt too and kept answers off the question's topic, so loops
    # are held back by a penalty on the answer's own tokens instead (measured: README). The demo's
    # adapter at T 0.4: on topic 69 %, markers 61 %; at 0.5: 70 %, 62 %; at 0.6: 65 %, 56 %.
    eval_temperature: float = 0.5
    eval_top_k: int = 40
    eval_repetition_penalty: float = 1.0
    eval_presence_penalty: float = 1.0
    # A further penalty per use: at 200 steps, presence 1.0 alone left 9 % of the answers looping on a
    # clause ("A když nemá, tak mám problém s vodou." ×4); with frequency 0.5 as well, 3 % (same adapter).
    eval_frequency_penalty: float = 0.5
    #: Questions in flight at once: the inference service batches them. 32 fits a stack with the
    #: default admission (8 running + 32 queued); demo.sh lets the service run 96 and sends 96, so each
    #: side's 94 questions decode as one batch (on Gemma a decode step mostly reads the 262k-word output
    #: layer, nearly the same for 48 rows or 94): the demo's benchmark took 121 s at 48, 103 s at 94,
    #: the same answers but one.
    eval_concurrency: int = 32
    adapter: str = ""

    @property
    def adapter_name(self) -> str:
        return self.adapter or f"{self.pack}-{self.base_model.replace('/', '-').replace('.', '-')}"[:64]

    def training_inputs(self) -> dict[str, Any]:
        """The settings the trained adapter depends on (the train stage's fingerprint)."""
        return {k: v for k, v in asdict(self).items() if k not in EVAL_ONLY}
