"""Several GPUs on one node, without GPUs: the launch command, the sharding, and rank-0-only writes.

The data-parallel run here is real — two processes under torchrun, gloo on the CPU instead of
NCCL on GPUs — and must train the same adapter as one process: the ranks' gradients are summed,
each weighted by the whole step's answer tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from talklike.training.launcher import worker_command
from talklike.training.ranks import Ranks
from talklike.training.settings import TrainingSettings

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def test_one_gpu_runs_the_worker_and_several_run_it_under_torchrun(tmp_path: Path) -> None:
    settings = TrainingSettings(home=tmp_path, notify_inference=False, use_disk_agent=True)
    single = worker_command(tmp_path, "job-1", settings, 1, python="python")
    assert single == [
        "python",
        "-m",
        "talklike.training.worker",
        "--home",
        str(tmp_path),
        "--job",
        "job-1",
        "--check-disk",
        "--gpu-memory-fraction=0.9",
    ]
    several = worker_command(tmp_path, "job-1", settings, 4, python="python")
    assert several[:5] == ["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    assert several[5:] == single[1:]  # the same worker, once per GPU


def test_ranks_read_torchrun_and_shard_each_step() -> None:
    assert Ranks.from_env({}) == Ranks()
    second = Ranks.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, device="cuda:1")
    assert (second.main, second.distributed, second.device) == (False, True, "cuda:1")
    step = [7, 3, 9, 1, 4]
    shards = [Ranks(rank=r, world_size=2).shard(step) for r in (0, 1)]
    assert shards == [[7, 9, 4], [3, 1]]
    assert Ranks(rank=2, world_size=3).shard([5]) == []  # a short last step leaves a rank idle
    assert Ranks().agree(True) and Ranks().sum_gradients([], 1.5, 2.0) == [1.5, 2.0]


@pytest.mark.slow
def test_two_ranks_train_the_adapter_of_one_and_only_rank_0_writes(persona_home: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    tmp_path = persona_home
    script = str(HERE / "data_parallel_run.py")
    solo, pair = tmp_path / "solo", tmp_path / "pair"
    subprocess.run([sys.executable, script, str(tmp_path), str(solo)], check=True, timeout=300)
    subprocess.run(
        [*TORCHRUN, "--nproc-per-node=2", script, str(tmp_path), str(pair)],
        check=True,
        timeout=300,
    )
    first, second = (json.loads((pair / f"rank-{r}.json").read_text()) for r in (0, 1))
    alone = json.loads((solo / "rank-0.json").read_text())
    assert first["events"] == alone["events"] and "step" in first["events"]
    assert second["events"] == [] and second["calls"] == []  # rank 1 reports and writes nothing
    assert first["calls"].count("_save_checkpoint") == 1 and "_save_best" in first["calls"]
    assert first["trained_tokens"] == alone["trained_tokens"]  # the ranks' tokens are summed
    weights = [
        load_file(tmp_path / "adapters" / name / "adapter_model.safetensors")
        for name in ("world-1", "world-2")
    ]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.allclose(weights[0][key], weights[1][key], atol=1e-5), key
    assert not (tmp_path / "adapters" / "world-2" / "rank-1").exists()
