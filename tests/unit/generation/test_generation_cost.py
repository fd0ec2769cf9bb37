"""Token counts and the fine-tuning bill, checked against cases worked out by hand."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.generation import tokens


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [
        (1, 25),  # 3 < 100 → min(25, 100 // 1)
        (3, 25),  # 9 < 100 → min(25, 33)
        (5, 20),  # 15 < 100 → 100 // 5
        (20, 5),  # 60 < 100 → 100 // 20
        (33, 3),  # 99 < 100 → 100 // 33
        (34, 3),  # 102 ≥ 100 → the target, 3
        (3000, 3),
        (8333, 3),  # 24,999 ≤ 25,000
        (9000, 2),  # 27,000 > 25,000 → 25,000 // 9,000
        (30000, 1),  # 25,000 // 30,000 = 0 → at least 1
    ],
)
def test_default_epochs_follow_openais_rule(examples: int, epochs: int) -> None:
    assert tokens.default_epochs(examples) == epochs


def test_billed_tokens_cut_each_example_at_the_limit() -> None:
    assert tokens.billed_tokens_per_epoch([10, 70_000, 65_536, 65_537], 65_536) == 10 + 65_536 * 3


def test_estimate_by_hand() -> None:
    # 50 examples of 100 tokens, epochs by rule: 150 < 100? no → 3 epochs; 5,000 × 3 = 15,000 tokens at $3/M
    est = tokens.estimate("gpt-4o-mini-2024-07-18", [100] * 50, 0, tokens.DEFAULT_PRICES)
    assert (est.epochs, est.epochs_defaulted, est.billed_tokens) == (3, True, 15_000)
    assert est.cost_usd == pytest.approx(0.045)
    # 10 examples of 200 tokens and one of 20,000 on gpt-3.5-turbo (limit 16,385), 4 epochs at $8/M
    est = tokens.estimate("gpt-3.5-turbo-0125", [200] * 10 + [20_000], 4, tokens.DEFAULT_PRICES)
    assert est.billed_tokens_per_epoch == 2_000 + 16_385
    assert est.billed_tokens == 4 * 18_385 and est.examples_over_limit == 1
    assert est.cost_usd == pytest.approx(4 * 18_385 * 8 / 1_000_000)
    assert est.encoding == "cl100k_base" and est.tokens.maximum == 20_000


def test_count_messages_by_hand() -> None:
    enc = tokens.encoding("cl100k_base")
    assert enc.encode("hello world") == [15339, 1917]  # the official cl100k ids
    assert enc.encode("user") == [882]
    # priming 3 + per message 3 + "user" 1 + "hello world" 2
    assert tokens.count_messages(enc, [{"role": "user", "content": "hello world"}]) == 9
    named = [{"role": "user", "content": "hello world", "name": "bob"}]
    assert tokens.count_messages(enc, named) == 9 + len(enc.encode("bob")) + 1
    assert tokens.count_many(enc, [named, named, [{"role": "user", "content": "hello world"}]]) == [
        tokens.count_messages(enc, named),
        tokens.count_messages(enc, named),
        9,
    ]


def test_encodings_are_picked_per_model_family() -> None:
    assert tokens.encoding_name_for("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert tokens.encoding_name_for("ft:gpt-4o-mini-2024-07-18:acme::abc123") == "o200k_base"
    assert tokens.encoding_name_for("gpt-4.1-nano-2025-04-14") == "o200k_base"
    assert tokens.encoding_name_for("gpt-4-0613") == "cl100k_base"
    assert tokens.encoding_name_for("gpt-3.5-turbo-0125") == "cl100k_base"
    assert tokens.encoding_name_for("davinci-002") == "cl100k_base"
    with pytest.raises(InvalidArgument) as info:
        tokens.encoding_name_for("llama-3-8b")
    assert info.value.field == "model"
    assert tokens.price_for("gpt-4.1-mini-2025-04-14", tokens.DEFAULT_PRICES).model == "gpt-4.1-mini"
    assert tokens.price_for("gpt-4.1-2025-04-14", tokens.DEFAULT_PRICES).model == "gpt-4.1"


def test_encodings_load_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(tokens, "_ENCODINGS", {})
    enc = tokens.encoding("o200k_base")
    assert enc.encode("hello world") == [24912, 2375]  # the official o200k ids
    assert enc.n_vocab == 200_019


def test_a_tampered_token_table_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_ENCODINGS", {})
    monkeypatch.setitem(tokens.EXPECTED_SHA256, "cl100k_base", "0" * 64)
    with pytest.raises(FailedPrecondition, match="digest"):
        tokens.encoding("cl100k_base")


def test_price_table_file_overrides_and_extends(tmp_path: Path) -> None:
    file = tmp_path / "prices.yaml"
    file.write_text(
        "gpt-4o-mini:\n  training_usd_per_million: 1.5\ngpt-4o-mini-2024-07-18:\n  training_usd_per_million: 2\n  example_token_limit: 100\n"
    )
    table, source = tokens.load_price_table(file)
    assert source == str(file)
    est = tokens.estimate("gpt-4o-mini-2024-07-18", [150, 50], 2, table)
    assert (est.price.training_usd_per_million, est.billed_tokens) == (2.0, 2 * 150)
    assert tokens.price_for("gpt-4o-mini-x", table).training_usd_per_million == 1.5
    file.write_text("gpt-4o:\n  example_token_limit: 5\n")
    with pytest.raises(FailedPrecondition, match="training_usd_per_million"):
        tokens.load_price_table(file)
    with pytest.raises(InvalidArgument) as info:
        tokens.estimate("gpt-4o-mini", [1], 51, table)
    assert info.value.field == "epochs"
