"""The GPU path: ``device="auto"`` picks CUDA, training runs under bf16 autocast, same-shape runs train
batched on the GPU, and a sweep's default executor keeps them in one process there.

These tests skip on a machine without CUDA (the lab's CI machine has none): the same code paths run in
fp32 on the CPU in the rest of the suite. bf16 keeps 8 bits of mantissa, so results are compared with
fp32 ones within a bf16 tolerance (2%), not exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from labkit.experiments import capacity
from labkit.runtime import resolve_device
from labkit.sweep import run_sweep
from labkit.train import autocast_context, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")

CONFIG = dict(capacity.grid(capacity.PROFILES["smoke"].sizes, (0,))[1], exposures=100)


def test_device_auto_is_the_gpu_and_its_forward_pass_runs_in_bf16():
    device = resolve_device("auto")
    assert device.type == "cuda"
    setup = capacity.run.setup(dict(CONFIG))
    model = setup.model.to(device)
    tokens = setup.dataset.exposure(0).tokens[:8].to(device)
    with autocast_context(device, "auto"):
        _, cache = model.run_with_cache(tokens)
    assert cache["blocks.0.hook_mlp_out"].dtype == torch.bfloat16
    with autocast_context(device, "off"):
        _, cache = model.run_with_cache(tokens)
    assert cache["blocks.0.hook_mlp_out"].dtype == torch.float32


def test_training_on_the_gpu_in_bf16_learns_like_fp32_on_the_cpu():
    gpu, cpu = capacity.run.setup(dict(CONFIG)), capacity.run.setup(dict(CONFIG))
    on_gpu = train(gpu.model, gpu.dataset, gpu.config, progress=False)  # device="auto": CUDA, bf16
    on_cpu = train(cpu.model, cpu.dataset, cpu.config, device="cpu", progress=False)
    assert on_gpu.device.startswith("cuda") and math.isfinite(on_gpu.final_loss)
    assert on_gpu.final_loss < on_gpu.losses[0]
    assert on_gpu.final_loss == pytest.approx(on_cpu.final_loss, rel=0.02)


def test_same_shape_runs_train_batched_on_the_gpu():
    configs = [dict(CONFIG, seed=seed) for seed in (0, 1, 2)]
    assert len({capacity.run.shape_key(c) for c in configs}) == 1
    batched = capacity.run.run_many(configs)
    separate = [capacity.run(c) for c in configs]
    for b, s in zip(batched, separate, strict=True):
        assert b["device"].startswith("cuda")
        assert b["final_loss"] == pytest.approx(s["final_loss"], rel=0.02)


def test_the_default_executor_trains_a_grid_on_the_gpu(tmp_path):
    grid = [dict(CONFIG, seed=seed) for seed in (0, 1)]
    report = run_sweep(grid, capacity.run, tmp_path, progress=False)  # "auto": batched, in this process
    assert report.ran == 2 and all(r["result"]["device"].startswith("cuda") for r in report.records)
