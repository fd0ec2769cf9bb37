"""Whether the CPU multiplies bf16, read from its flags, and what "auto" serves in."""

from __future__ import annotations

from pathlib import Path

import pytest
from talklike.models import precision
from talklike.models.precision import cpu_multiplies_bf16, serving_dtype


def test_bf16_instructions_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    flags = {
        "fpu sse2 avx2 avx512f avx512bw": False,  # AVX-512 alone: bf16 would be emulated
        "fpu avx2 avx512f avx512_bf16 avx512_vnni": True,  # Cooper Lake, Zen 4
        "fpu avx512f amx_bf16 amx_tile amx_int8": True,  # Sapphire Rapids
        "fpu avx512f xamx_bf16x": False,  # a word boundary, not a substring
    }
    for line, expected in flags.items():
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {line}\n")
        assert cpu_multiplies_bf16(tmp_path / "cpuinfo") is expected, line
    assert cpu_multiplies_bf16(tmp_path / "missing") is False


def test_auto_serves_in_bfloat16_only_where_the_cpu_multiplies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serving_dtype("float32", "cpu") == "float32" and serving_dtype("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(precision, "cpu_multiplies_bf16", lambda: True)
    assert serving_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(precision, "cpu_multiplies_bf16", lambda: False)
    assert serving_dtype("auto", "cpu") == "float32"
