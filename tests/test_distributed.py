"""One model on several processes: ``torchrun --nproc_per_node=2 -m labkit train ...`` (DDP over gloo)
against the same run in one process.

The same global batch gives the same final weights up to float rounding only: each process multiplies
half the minibatch's rows and the all-reduce sums the two halves' gradients in its own order, and
AdamW carries those last-bit differences along. So weights are compared within a tolerance (1e-4,
against weights of order 1 that moved by far more than that during training).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import raises_invalid

from labkit import cli, distributed
from labkit.checkpoint import load_weights
from labkit.experiments import capacity
from labkit.loss import IGNORE_INDEX
from labkit.model import Transformer
from labkit.sweep import config_hash, load_results

# 97 people in minibatches of 32: the last minibatch of each exposure has 1 item, so one process has no row
CONFIG = dict(capacity.grid(capacity.PROFILES["smoke"].sizes, (0,))[1], N=97, batch_size=32, exposures=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(path: Path) -> dict[str, torch.Tensor]:
    setup = capacity.run.setup(dict(CONFIG))
    load_weights(setup.model, path)
    return {k: v.clone() for k, v in setup.model.state_dict().items()}


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """The run trained by 2 gloo processes under torchrun, and by this process alone."""
    root = tmp_path_factory.mktemp("ddp")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}  # loopback only
    command = [torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
               "-m", "labkit", "train", "capacity", "--profile", "smoke", "--config", json.dumps(CONFIG),
               "--cache", str(root / "two"), "--save-model", str(root / "two.safetensors")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert cli.main(["train", "capacity", "--profile", "smoke", "--config", json.dumps(CONFIG),
                     "--cache", str(root / "one"), "--save-model", str(root / "one.safetensors")]) == 0
    return root, done.stdout


def test_two_processes_reach_the_weights_of_one(two_and_one):
    root, stdout = two_and_one
    assert "on 2 process(es)" in stdout and stdout.count("trained {") == 1  # rank 0 alone reports
    two, one = weights(root / "two.safetensors"), weights(root / "one.safetensors")
    start = Transformer(capacity.run.setup(dict(CONFIG)).model.cfg, seed=0).state_dict()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-4, msg=name)
    moved = max(float((one[n] - start[n]).abs().max()) for n in one)
    assert moved > 0.1  # training moved the weights a thousand times the tolerance


def test_two_processes_store_one_record_with_the_numbers_of_one(two_and_one):
    root, _ = two_and_one
    (two,), (one,) = load_results(root / "two"), load_results(root / "one")
    assert two["hash"] == one["hash"] == config_hash(CONFIG)
    assert two["result"]["steps"] == one["result"]["steps"] == 4 * 30
    assert two["result"]["tokens_seen"] == one["result"]["tokens_seen"]
    assert two["result"]["final_loss"] == pytest.approx(one["result"]["final_loss"], rel=1e-5)
    assert two["result"]["bits"] == pytest.approx(one["result"]["bits"], rel=1e-4, abs=0.01)


def test_shards_weigh_their_losses_to_the_whole_minibatch_mean():
    torch.manual_seed(0)
    targets = torch.randint(0, 5, (5, 6))
    targets[torch.rand(5, 6) < 0.4] = IGNORE_INDEX
    losses = torch.rand(5, 6)  # per-token losses: a shard's mean loss is their mean over its targets
    whole = losses[targets != IGNORE_INDEX].mean()
    for size in (2, 3, 7):  # 7 > 5 rows: some processes hold no row
        total = torch.tensor(0.0)
        for rank in range(size):
            x, y, weight = distributed.shard(losses, targets, distributed.World(rank, size), IGNORE_INDEX)
            local = x[y != IGNORE_INDEX].mean()
            assert torch.isfinite(local)  # a process without targets still computes a finite loss
            total += weight * local
        torch.testing.assert_close(total / size, whole)  # DDP's average of the weighted losses


def test_ddp_without_a_process_group_is_refused():
    setup = capacity.run.setup(dict(CONFIG))
    with raises_invalid("ddp=True needs a process group of several processes"):
        from labkit.train import train

        train(setup.model, setup.dataset, setup.config, ddp=True, progress=False)
    assert distributed.init() == distributed.World()  # no torchrun: a world of one, nothing initialised


@pytest.mark.parametrize(("flags", "message"), [
    (["--index", "99"], "error: index=99 is not valid; allowed: 0 <= index <= 1"),
    (["--index", "x"], "error: index='x' is not valid; allowed: a whole number"),
    (["--config", "{oops"], "error: config='{oops' is not valid; allowed: a JSON object"),
    ([], "error: give exactly one of index and config"),
    (["--index", "0", "--backend", "mpi"], "error: backend='mpi' is not valid; allowed: 'auto', 'gloo', 'nccl'"),
])
def test_train_bad_input_is_one_error_line(flags, message, capsys, tmp_path):
    assert cli.main(["train", "capacity", "--profile", "smoke", "--cache", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_one_process_per_gpu_with_nccl(tmp_path):
    gpus = torch.cuda.device_count()
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={min(gpus, 2)}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "labkit", "train", "capacity",
               "--profile", "smoke", "--config", json.dumps(CONFIG), "--cache", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    (record,) = load_results(tmp_path)
    assert record["result"]["device"].startswith("cuda")
