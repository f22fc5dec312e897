"""Sweep throughput on this machine: trainer overhead, batched vs one-by-one training, sweep executors.

Why: every chapter is a sweep of tiny trainings, so tokens per second of *sweeps* is the lab's speed.
One run of this script prints, side by side and as ratios from the same process:

1. peak fp32 matmul rate (a large ``torch.matmul``), the denominator of MFU = 6·P·tokens/s / peak;
2. ``labkit.train.train`` against a minimal plain-PyTorch loop (same model, AdamW, clipping, schedule,
   same batches): the trainer's overhead;
3. 8 same-shape models trained one after another (``train``) against together (``train_batched``), at
   ~20k / ~100k / ~250k parameters (chapter 2's ``cpu-full`` bioD records: 20 tokens, batch 128), plus a
   small-step case (short records, batch 16) where per-step overhead dominates;
4. a capacity-style sweep (3 sizes × 4 seeds) through the sweep executors: serial with torch's
   default threads, serial with 1 thread, batched in one process, and 1-thread worker processes
   (unbatched and batched = ``auto_executor``);
5. chapter 2's ``cpu-full`` capacity sweep, before and after the lab's sweep speed-ups (fused loss,
   1-thread worker processes, batched same-shape runs), on a slice of it: every one of its 8 runs
   (data, model, bits measurement included) with ``--cpu-full-fraction`` of its exposures, so each
   run keeps its share of the sweep's time. *Before*: the run one after the other with the
   earlier training step (logits, then ``F.cross_entropy``; the plain loop of 2.), with torch's
   default threads and with 1 thread (what a notebook's ``labkit.setup`` gave). *After*: exactly what
   ``python -m labkit sweep capacity --profile cpu-full`` runs (the profile's worker processes, fused loss);
   plus the fused loss alone (serial, default threads) to split the gain.

Other jobs share the machine, so absolute seconds mean little: variants run alternately (A B A B ...)
and ratios are medians of back-to-back pairs. Single-process rows are timed in CPU seconds of this
process (insensitive to time the scheduler gives to other jobs; they run with 1 thread), executor rows
in wall seconds (they use several processes). The load average is recorded before and after.
The table also goes to ``_build/bench/bench_sweep.json``.

    python benchmarks/bench_sweep.py [--quick] [--cpu-full-fraction F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, no install needed
from labkit.batched import BatchableRun, RunSetup, keep_freed_memory, train_batched  # noqa: E402
from labkit.data.biod import BioD  # noqa: E402
from labkit.data.uniform import RandomSequences  # noqa: E402
from labkit.experiments import capacity  # noqa: E402
from labkit.model import Transformer, tiny  # noqa: E402
from labkit.sweep import auto_executor, batched_executor, process_executor, run_sweep, serial_executor  # noqa: E402
from labkit.train import (  # noqa: E402
    TrainConfig,
    TrainHistory,
    exposure_permutation,
    lr_at,
    record_lengths,
    shifted_targets,
    steps_per_exposure,
    train,
)

OUT = ROOT / "_build" / "bench" / "bench_sweep.json"


def biod(n: int, seed: int = 0) -> BioD:
    """Chapter 2's ``cpu-full`` data: 2-token names from 100 × 100, K = 8 attributes of 256 values, 20 tokens."""
    return BioD(n, K=8, C=1, D=256, L=1, T=256, seed=seed, name_pools=(100, 100))


def n_params(cfg) -> int:
    return sum(p.numel() for p in Transformer(cfg).parameters())


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def alternate(variants: dict[str, Callable[[], object]], rounds: int, clock: Callable[[], float]) -> dict:
    """Time each variant ``rounds`` times, alternating and rotating which one starts a round."""
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = clock()
            variants[name]()
            times[name].append(clock() - t0)
    return times


def paired_ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of time(slow) / time(fast): > 1 means ``fast`` is faster."""
    return statistics.median(a / b for a, b in zip(times[slow], times[fast], strict=True))


# --------------------------------------------------------------------------------------------------
# 1. peak matmul
# --------------------------------------------------------------------------------------------------


def peak_flops(threads: int, n: int = 2048, reps: int = 8) -> float:
    """Best fp32 matmul rate over ``reps`` products of n × n matrices, per CPU second of this process
    (1 thread; the clock of the single-process rows) or per wall second (several threads)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    clock = time.process_time if threads == 1 else time.perf_counter
    best = min(_timed(lambda: torch.matmul(a, b), clock) for _ in range(reps))
    return 2 * n**3 / best


def _timed(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    fn()
    return clock() - t0


# --------------------------------------------------------------------------------------------------
# 2. labkit.train vs a plain loop
# --------------------------------------------------------------------------------------------------


def plain_loop(model: Transformer, data, exposures: int, batch_size: int, lr: float, seed: int) -> None:
    """The minimal loop of the same recipe: AdamW (decay on ≥2-D tensors), warmup + cosine, clip 1.0."""
    batch = data.exposure(0)  # static data
    tokens, targets = batch.tokens, shifted_targets(batch)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), fused=True)
    params = decay + other
    steps_per = -(-data.n_items // batch_size)
    total, step = steps_per * exposures, 0
    for e in range(exposures):
        order = exposure_permutation(seed, e, data.n_items)
        for j in range(steps_per):
            idx = order[j * batch_size : (j + 1) * batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, lr, 0.02, 0.1)
            logits = model(tokens[idx])
            loss = F.cross_entropy(logits.flatten(0, 1), targets[idx].flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()
            step += 1


def bench_trainer(rounds: int, peak1: float) -> dict:
    torch.set_num_threads(1)
    data = biod(1024)
    cfg = tiny(data.vocab_size, 20, d_model=32)
    exposures, batch_size, lr = 3, 128, 5e-3
    tokens = exposures * data.n_items * 20
    times = alternate({
        "plain": lambda: plain_loop(Transformer(cfg, seed=0), data, exposures, batch_size, lr, 0),
        "labkit": lambda: train(Transformer(cfg, seed=0), data, exposures=exposures, batch_size=batch_size, lr=lr,
                                seed=0, device="cpu", progress=False),
    }, rounds, time.process_time)
    P = n_params(cfg)
    row = {"params": P, "tokens": tokens, "threads": 1}
    row.update(throughput_columns(times, tokens, P, peak1))
    row["labkit_vs_plain"] = round(paired_ratio(times, "plain", "labkit"), 3)
    return row


# --------------------------------------------------------------------------------------------------
# 3. 8 models: one by one vs batched
# --------------------------------------------------------------------------------------------------


def throughput_columns(times: dict, tokens: int, params: int, peak: float) -> dict:
    """``<name>_tok_s`` and ``<name>_mfu`` (6·P·tokens/s over the measured peak) for each timed variant."""
    columns = {}
    for name, samples in times.items():
        tps = tokens / statistics.median(samples)
        columns[f"{name}_tok_s"] = round(tps)
        columns[f"{name}_mfu"] = round(6 * params * tps / peak, 4)
    return columns


def bench_batched(label: str, data, d_model: int, batch_size: int, exposures: int, rounds: int, peak1: float,
                  models: int = 8) -> dict:
    torch.set_num_threads(1)
    cfg = tiny(data.vocab_size, int(data.exposure(0).tokens.shape[1]), d_model=d_model)
    seeds = list(range(models))

    def one_by_one() -> None:
        for s in seeds:
            train(Transformer(cfg, seed=s), data, exposures=exposures, batch_size=batch_size, lr=5e-3, seed=s,
                  device="cpu", progress=False)

    def together() -> None:
        train_batched([Transformer(cfg, seed=s) for s in seeds], data,
                      [TrainConfig(exposures=exposures, batch_size=batch_size, lr=5e-3, seed=s) for s in seeds],
                      device="cpu", progress=False)

    times = alternate({"sequential": one_by_one, "batched": together}, rounds, time.process_time)
    P = n_params(cfg)
    tokens = models * exposures * data.exposure(0).tokens.numel()
    row = {"case": label, "params": P, "models": models, "batch_size": batch_size,
           "seq_len": int(data.exposure(0).tokens.shape[1]), "threads": 1}
    row.update(throughput_columns(times, tokens, P, peak1))
    row["batched_vs_sequential"] = round(paired_ratio(times, "sequential", "batched"), 3)
    return row


# --------------------------------------------------------------------------------------------------
# 4. a capacity-style sweep through the executors
# --------------------------------------------------------------------------------------------------


class CapacityRun(BatchableRun):
    """One capacity-style run: a tiny GPT of width ``d_model`` on bioD data of its seed (the lab's CPU
    recipe: AdamW at lr 5e-3, batch 128).

    Results carry ``cpu_s``, the CPU seconds of the training in whichever process ran it (a batch's
    share per run), from which the speed-up on an otherwise idle machine is estimated.
    """

    def setup(self, config: dict) -> RunSetup:
        data = biod(config["N"], seed=config["seed"])
        model = Transformer(tiny(data.vocab_size, 20, d_model=config["d_model"]), seed=config["seed"])
        return RunSetup(model, data, TrainConfig(exposures=config["exposures"], batch_size=128, lr=5e-3,
                                                 seed=config["seed"]))

    def finish(self, config: dict, setup: RunSetup, history) -> dict:
        return {"final_loss": history.final_loss, "tokens": history.tokens_seen}

    def __call__(self, config: dict) -> dict:
        t0 = time.process_time()
        result = super().__call__(config)
        return {**result, "cpu_s": time.process_time() - t0}

    def run_many(self, configs: list[dict]) -> list[dict]:
        t0 = time.process_time()
        results = super().run_many(configs)
        share = (time.process_time() - t0) / len(configs)
        return [{**r, "cpu_s": share} for r in results]


def _sweep(grid: list[dict], executor, threads: int, cpu: list[float]) -> Callable[[], None]:
    def go() -> None:
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            records = run_sweep(grid, CapacityRun(), tmp, progress=False, executor=executor).records
        cpu.append(sum(r["result"]["cpu_s"] for r in records))
    return go


def bench_sweep(rounds: int, quick: bool) -> dict:
    """The executors on one grid (wall time, pool start-up included); then torch's default threads
    against 1 thread for serial runs, on one short run per size (slow under load, hence small).

    ``est_idle_speedup``: serial CPU seconds / (this executor's CPU seconds of runs / processes it
    uses), i.e. the speed-up if every process had a core of its own (pool start-up and imbalance
    ignored); the measured wall ratio is that minus what other jobs on the machine took.
    """
    exposures = 3 if quick else 4
    grid = [{"d_model": d, "seed": s, "N": 1000, "exposures": exposures} for d in (16, 24, 32) for s in range(4)]
    cores = os.cpu_count() or 1
    spec = {
        "serial, 1 thread": (serial_executor, 1),
        "batched, 1 process, 1 thread": (batched_executor(), 1),
        f"processes ×{cores}, 1 thread each": (process_executor(batch=False), cores),
        f"auto: processes ×{cores} + batched": (auto_executor(), cores),
    }
    cpu: dict[str, list[float]] = {name: [] for name in spec}
    times = alternate({name: _sweep(grid, ex, 1, cpu[name]) for name, (ex, _) in spec.items()}, rounds,
                      time.perf_counter)
    tokens = sum(c["N"] * 20 * c["exposures"] for c in grid)
    base = next(iter(spec))
    serial_cpu = statistics.median(cpu[base])
    rows = [{"executor": name, "wall_s": round(statistics.median(t), 2), "tok_s": round(tokens / statistics.median(t)),
             "speedup": round(paired_ratio(times, base, name), 3), "cpu_s": round(statistics.median(cpu[name]), 2),
             "est_idle_speedup": round(serial_cpu / (statistics.median(cpu[name]) / spec[name][1]), 2)}
            for name, t in times.items()]
    subset = [{**c, "exposures": 3} for c in grid[::4]]  # one seed per size
    sub_cpu: list[float] = []
    threads = alternate({"1": _sweep(subset, serial_executor, 1, sub_cpu),
                         "all": _sweep(subset, serial_executor, cores, sub_cpu)}, rounds, time.perf_counter)
    torch.set_num_threads(cores)
    sub_tokens = sum(c["N"] * 20 * c["exposures"] for c in subset)
    for name, label in (("1", "serial, 1 thread"), ("all", f"serial, {cores} threads")):
        rows.append({"executor": f"{label} (3 short runs)", "wall_s": round(statistics.median(threads[name]), 2),
                     "tok_s": round(sub_tokens / statistics.median(threads[name])),
                     "speedup": round(paired_ratio(threads, "1", name), 3)})
    return {"grid": f"3 sizes (d 16/24/32) × 4 seeds, bioD N=1000, {exposures} exposures, batch 128",
            "runs": len(grid), "rows": rows}


# --------------------------------------------------------------------------------------------------
# 5. chapter 2's cpu-full sweep: before and after
# --------------------------------------------------------------------------------------------------


class PlainLoopCapacityRun(capacity.CapacityRun):
    """``capacity.run`` as it computed before the fused loss: the same data, model, recipe and bits
    measurement, trained by the plain loop (full logits, then ``F.cross_entropy``), which ran at the
    speed of the earlier ``labkit.train`` (section 2 measures the two side by side)."""

    def __call__(self, config: dict) -> dict:
        s = self.setup(config)
        recipe = s.config
        t0 = time.perf_counter()
        plain_loop(s.model, s.dataset, recipe.exposures, recipe.batch_size, recipe.lr, recipe.seed)
        steps = steps_per_exposure(s.dataset.n_items, recipe.batch_size) * recipe.exposures
        tokens = recipe.exposures * int(record_lengths(s.dataset.exposure(0)).sum())
        history = TrainHistory(total_steps=steps, tokens_seen=tokens, wall_time=time.perf_counter() - t0, device="cpu")
        return self.finish(config, s, history)


def cpu_full_slice(fraction: float) -> list[dict]:
    """The cpu-full grid of chapter 2 with ``fraction`` of each run's exposures (at least 1)."""
    sizes = capacity.PROFILES["cpu-full"].sizes
    grid = capacity.grid(sizes, sizes.seeds)
    return [{**c, "exposures": max(1, round(fraction * c["exposures"]))} for c in grid]


CPU_FULL_VARIANTS = ("before", "before-1-thread", "fused-only", "after")


def bench_cpu_full(fraction: float, which: tuple[str, ...] = CPU_FULL_VARIANTS) -> dict:
    """Wall seconds of the sliced cpu-full sweep, before vs after; one pass of each variant in ``which``
    (the last one is the reference of the ratios: pass "after" last)."""
    grid = cpu_full_slice(fraction)
    cores = os.cpu_count() or 1
    execution = capacity.PROFILES["cpu-full"].run
    after = process_executor(workers=execution.processes, threads=execution.threads, batch=True, cost=capacity.cost)
    every = {
        "before": (f"before: serial, {cores} threads (torch default)", PlainLoopCapacityRun(), serial_executor, cores),
        "before-1-thread": ("before: serial, 1 thread (labkit.setup default)", PlainLoopCapacityRun(),
                            serial_executor, 1),
        "fused-only": (f"fused loss only: serial, {cores} threads", capacity.run, serial_executor, cores),
        "after": (f"after: python -m labkit sweep capacity (pool ×{execution.processes}, {execution.threads} thread)",
                  capacity.run, after, 1),
    }
    variants = {every[key][0]: every[key][1:] for key in which}
    times: dict[str, float] = {}
    for name, (run, executor, threads) in variants.items():
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            times[name] = _timed(partial(run_sweep, grid, run, tmp, progress=False, executor=executor))
        print(f"  {name}: {times[name]:.1f} s", flush=True)
    torch.set_num_threads(cores)
    reference = list(times)[-1]
    rows = [{"variant": name, "wall_s": round(t, 1), "after_speedup": round(t / times[reference], 2)}
            for name, t in times.items()]
    return {"grid": f"cpu-full ({len(grid)} runs: widths {sorted({c['d_model'] for c in grid})}, exposures "
                    f"{sorted({c['exposures'] for c in grid})} = {fraction} of 100 / 1000)", "fraction": fraction,
            "rows": rows}


# --------------------------------------------------------------------------------------------------


def warm_up() -> None:
    """One small run of each code path, so no timed variant pays one-time costs (lazy init, allocator)."""
    torch.set_num_threads(1)
    data = biod(256)
    cfg = tiny(data.vocab_size, 20, d_model=16)
    train(Transformer(cfg), data, exposures=1, batch_size=128, progress=False, device="cpu")
    plain_loop(Transformer(cfg), data, 1, 128, 5e-3, 0)
    train_batched([Transformer(cfg), Transformer(cfg)], data, exposures=1, batch_size=128, progress=False, device="cpu")


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    widths = [max(len(title), *(len(_fmt(r.get(key))) for r in rows)) for key, title in columns]
    lines = ["  ".join(title.rjust(w) for (_, title), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(_fmt(r.get(key)).rjust(w) for (key, _), w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller runs (a smoke check)")
    parser.add_argument("--cpu-full-fraction", type=float, default=None,
                        help="share of each cpu-full run's exposures in section 5 (default 0.05, --quick 0.01; "
                             "0 skips it)")
    parser.add_argument("--only-cpu-full", action="store_true", help="run section 5 alone")
    parser.add_argument("--cpu-full-variants", default=",".join(CPU_FULL_VARIANTS),
                        help=f"section 5's variants, comma-separated, the reference last (default: all of "
                             f"{','.join(CPU_FULL_VARIANTS)})")
    args = parser.parse_args(argv)
    if args.cpu_full_fraction is None:
        args.cpu_full_fraction = 0.01 if args.quick else 0.05
    if not 0 <= args.cpu_full_fraction <= 1:
        parser.error(f"--cpu-full-fraction={args.cpu_full_fraction} is not valid; allowed: a number in [0, 1]")
    which = tuple(v.strip() for v in args.cpu_full_variants.split(",") if v.strip())
    if not which or set(which) - set(CPU_FULL_VARIANTS):
        parser.error(f"--cpu-full-variants={args.cpu_full_variants!r} is not valid; allowed: a comma-separated "
                     f"subset of {', '.join(CPU_FULL_VARIANTS)}")
    rounds = 2 if args.quick else 3
    keep_freed_memory()  # what train_batched does anyway; set first so every variant runs under it
    t_start, load_before = time.perf_counter(), load()
    peak1, peak2 = peak_flops(1), peak_flops(os.cpu_count() or 1)
    print(f"peak fp32 matmul: {peak1 / 1e9:.1f} GFLOP/s per CPU second (1 thread), {peak2 / 1e9:.1f} GFLOP/s "
          f"wall ({os.cpu_count()} threads); load average {load_before}", flush=True)

    trainer = batched_rows = sweep = None
    if not args.only_cpu_full:
        warm_up()
        trainer = bench_trainer(rounds + 1, peak1)
        print("\nlabkit.train vs a plain PyTorch loop (1 thread, d 32, bioD batch 128; tokens per CPU second)")
        print(table([trainer], [("params", "params"), ("plain_tok_s", "plain tok/s"), ("labkit_tok_s", "labkit tok/s"),
                                ("labkit_vs_plain", "labkit/plain"), ("plain_mfu", "MFU plain"),
                                ("labkit_mfu", "MFU labkit")]), flush=True)

        n = 256 if args.quick else 384
        exp = 2 if args.quick else 3
        cases = [("~20k", biod(n), 20, 128, exp), ("~100k", biod(n), 56, 128, exp), ("~250k", biod(n), 92, 128, exp),
                 ("~20k, small steps", RandomSequences(256, S=6, V=32), 24, 16, exp)]
        batched_rows = []
        print("\n8 same-shape models: one after another (train) vs together (train_batched); 1 thread, "
              "tokens per CPU second")
        for label, data, d, bs, e in cases:
            batched_rows.append(bench_batched(label, data, d, bs, e, rounds, peak1))
        print(table(batched_rows, [("case", "case"), ("params", "params"), ("batch_size", "batch"), ("seq_len", "seq"),
                                   ("sequential_tok_s", "sequential tok/s"), ("batched_tok_s", "batched tok/s"),
                                   ("batched_vs_sequential", "batched/seq"), ("sequential_mfu", "MFU seq"),
                                   ("batched_mfu", "MFU batched")]), flush=True)

        sweep = bench_sweep(2, args.quick)
        print(f"\ncapacity-style sweep: {sweep['grid']} ({sweep['runs']} runs); wall seconds, this machine")
        print(table(sweep["rows"], [("executor", "executor"), ("wall_s", "wall s"), ("tok_s", "tok/s"),
                                    ("speedup", "vs serial 1 thread"), ("cpu_s", "CPU s of runs"),
                                    ("est_idle_speedup", "est. on idle cores")]))
        print("(speed-up of the last two rows: against the first of them, on their 3 short runs)")

    cpu_full = None
    if args.cpu_full_fraction > 0:
        print(f"\nchapter 2's cpu-full sweep, {args.cpu_full_fraction} of every run's exposures; wall seconds",
              flush=True)
        cpu_full = bench_cpu_full(args.cpu_full_fraction, which)
        print(cpu_full["grid"])
        print(table(cpu_full["rows"], [("variant", "variant"), ("wall_s", "wall s"),
                                       ("after_speedup", f"time / time of '{which[-1]}'")]))

    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "load_before": load_before, "load_after": load(), "wall_s": round(time.perf_counter() - t_start, 1),
        "peak_gflops": {"1_thread": round(peak1 / 1e9, 1), "all_threads": round(peak2 / 1e9, 1)},
        "trainer_vs_plain": trainer, "batched_vs_sequential": batched_rows, "sweep_executors": sweep,
        "cpu_full_before_after": cpu_full, "quick": args.quick,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"\nload average after: {result['load_after']}; total {result['wall_s']} s; wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
