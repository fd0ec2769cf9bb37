"""The quick pipeline end to end through the real services: the local stack (generation, moderation,
training, inference, disk agent) as separate processes on free loopback ports in a temporary data home,
the `tiny` model, and `talklike pipeline run` from another process. Then the report's files are
checked, and report.html is rendered in headless Chromium when it is installed."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook

pytestmark = pytest.mark.slow


PACK = "babis"  # the seed's persona, built in


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVICES = ("generation", "moderation", "training", "inference", "disk-agent")
TALKLIKE = [sys.executable, "-m", "talklike.cli.main"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    home = tmp_path_factory.mktemp("e2e-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
    env.update(TALKLIKE_HOME=str(home), TALKLIKE_INFERENCE_BASE_MODEL="tiny", TALKLIKE_LOG_FORMAT="text")
    for name in SERVICES:
        prefix = "TALKLIKE_" + name.upper().replace("-", "_")
        port = free_port()
        env[f"{prefix}_PORT"] = str(port)
        env[f"{prefix}_ADDRESS"] = f"127.0.0.1:{port}"
        env[f"{prefix}_METRICS_PORT"] = str(free_port())
    env["TALKLIKE_INFERENCE_HTTP_PORT"] = str(free_port())
    up = subprocess.run(
        [*TALKLIKE, "up", "--home", str(home), "--only", ",".join(SERVICES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield home, env
    finally:
        subprocess.run([*TALKLIKE, "down", "--home", str(home)], env=env, capture_output=True, timeout=120)


def test_quick_pipeline_writes_a_complete_report(stack: tuple[Path, dict[str, str]]) -> None:
    home, env = stack
    command = [
        *TALKLIKE,
        "pipeline",
        "run",
        "--home",
        str(home),
        "--pack",
        PACK,
        "--base-model",
        "tiny",
        "--out",
        "runs/quick",
        "--count",
        "240",
        "--max-steps",
        "40",
        "--learning-rate",
        "0.003",
        "--eval-questions",
        "10",
        "--max-new-tokens",
        "24",
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = home / "runs" / "quick" / "report"
    heldout = [
        json.loads(line)
        for line in next((home / "datasets").glob("pipeline-quick*/heldout.jsonl")).read_text().splitlines()
    ][:10]

    with (report / "results.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    template = [r for r in rows if r["source"] == "template"]
    assert [r["question"] for r in template] == [h["messages"][-1]["content"] for h in heldout]
    assert {r["source"] for r in rows} <= {"template", "freeform"}
    for row in template:
        assert row["reference_answer"] and row["style"]
    for row in rows:
        for side in ("before", "after"):
            for column in ("signature", "markers", "words", "real_words", "not_language", "loop", "relevant"):
                assert row[f"{column}_{side}"] != "", f"{column}_{side}"
            assert f"opening_{side}" in row
    assert load_workbook(report / "results.xlsx")["results"].max_row == len(rows) + 1
    summary = json.loads((report / "summary.json").read_text())
    assert (
        summary["questions"] == len(rows) and summary["perplexity"]["after"] < summary["perplexity"]["before"]
    )
    overall = summary["metrics"]["overall"]
    for key in ("signature_rate", "loop_rate", "not_language_rate", "relevance_rate", "top_opening_share"):
        low, high = overall[key]["after"]["ci"]
        assert low <= overall[key]["after"]["value"] <= high and overall[key]["p_value"] is not None, key
    ppl = summary["metrics"]["template"]["perplexity"]["after"]
    assert ppl["ci"][0] <= ppl["value"] <= ppl["ci"][1]
    page = (report / "report.html").read_text()
    assert page.count("<img ") == 3 and page.count("<tr>") >= len(rows) and 'class="ci"' in page

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert (
        again.returncode == 0 and again.stderr.count("skipped: inputs and settings unchanged") == 4
    )  # generate, moderate, train, eval


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_report_renders_in_headless_chromium(stack: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the report: install Debian's chromium (make browser)")
        pytest.skip("Debian's chromium is not installed here (make browser)")
    home, _env = stack
    page = home / "runs" / "quick" / "report" / "report.html"
    if not page.exists():
        pytest.skip("the pipeline test did not produce a report")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert (
        'id="results"' in dom.stdout
        and 'id="summary"' in dom.stdout
        and dom.stdout.count("data:image/png;base64,") == 3
    )
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page with charts, not a blank one
