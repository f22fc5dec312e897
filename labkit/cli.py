"""``python -m labkit``: rerun a chapter with parameters, list profiles, build the website, run a sweep or one training.

Only the command line lives here: arguments, and the one-line ``error: ...`` a user sees. The work is
done by ``labkit.runner`` (papermill runs), ``labkit.site`` (the website), ``labkit.profiles`` and
``labkit.experiments``, imported when a command needs them, so ``python -m labkit --help`` stays fast
and no module of labkit has a reason to import this one.

Exit status: 0 on success, 2 for bad input (an unknown parameter, a profile a chapter lacks), 1 when an
executed notebook fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_run(args: argparse.Namespace) -> int:
    from labkit.runner import ParameterError, default_output, parse_value, run_notebook, validate_parameters

    notebook = Path(args.notebook)
    if notebook.suffix != ".ipynb" or not notebook.is_file():
        raise ParameterError(f"notebook={args.notebook!r} is not an existing .ipynb file")
    given = {name: parse_value(value) for name, value in (args.parameters or [])}
    parameters = validate_parameters(notebook, given)
    if args.in_place and args.output:
        raise ParameterError("use either --in-place or -o/--output, not both")
    output = notebook if args.in_place else Path(args.output) if args.output else default_output(notebook, parameters)
    print(f"running {notebook} with {parameters or 'default parameters'} -> {output}", flush=True)
    run_notebook(notebook, parameters, output, progress=not args.quiet)
    print(f"wrote {output}")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from labkit.profiles import describe

    print(describe(args.chapter))
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from labkit import site

    source = site.stage_book(args.profile, args.seed) if args.execute else site.ROOT
    site.build_site(source_dir=source, output_root=site.ROOT)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from labkit.experiments import sweep_command

    options = {name: getattr(args, name) for name in ("address", "gpus", "partition", "time", "slurm_config",
                                                      "slurm_cluster")}
    return sweep_command(args.experiment, profile=args.profile, out=args.out, cache=args.cache,
                         executor=args.executor, dry_run=args.dry_run, executor_options=options)


def _cmd_train(args: argparse.Namespace) -> int:
    from labkit.experiments import train_command

    index = None if args.index is None else _whole("index", args.index)
    return train_command(args.experiment, profile=args.profile, index=index, config=args.config, cache=args.cache,
                         save_model=args.save_model, backend=args.backend)


def _cmd_models(args: argparse.Namespace) -> int:
    import json

    from labkit.experiments import models_command

    where = {}
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"where={item!r} is not valid; allowed: KEY=VALUE, e.g. exposures=1000")
        try:
            where[key] = json.loads(value)
        except json.JSONDecodeError:
            where[key] = value
    return models_command(args.experiment, profile=args.profile, where=where, out=args.out)


def _whole(name: str, text: str) -> int:
    """A flag's integer, with the lab's one-line error (argparse's own would print the usage too)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not valid; allowed: a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m labkit`` and its subcommands."""
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a chapter notebook with parameters (papermill)")
    run.add_argument("notebook", help="path to notebooks/NN_topic.ipynb")
    run.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter of the notebook's parameters cell (repeatable)")
    run.add_argument("-o", "--output", help="output notebook (default: _build/runs/<name>__<params>.ipynb)")
    run.add_argument("--in-place", action="store_true", help="overwrite the input notebook with the executed one")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)
    prof = sub.add_parser("profiles", help="list chapters, their profiles and sizes")
    prof.add_argument("chapter", nargs="?", help="one chapter, e.g. 00_welcome (default: every chapter)")
    prof.set_defaults(func=_cmd_profiles)
    book = sub.add_parser("book", help="build the website (_build/html); --execute reruns every chapter first")
    book.add_argument("--execute", action="store_true", help="execute every chapter with papermill before building")
    book.add_argument("--profile", default="quick", help="profile for --execute (default: quick)")
    book.add_argument("--seed", type=int, default=None, help="seed for --execute (default: each notebook's own)")
    book.set_defaults(func=_cmd_book)
    sweep = sub.add_parser("sweep", help="run an experiment's grid of trainings (cached, resumable)")
    sweep.add_argument("experiment", help="an experiment of labkit.experiments, e.g. capacity (chapter 2)")
    sweep.add_argument("--profile", required=True, help="the profile whose grid to run, e.g. quick or cpu-full")
    sweep.add_argument("--out", default=None, help="write the results as JSON to this file (default: the experiment's)")
    sweep.add_argument("--cache", default=None, help="folder of finished runs (default: the experiment's)")
    sweep.add_argument("--executor", default=None,
                       help="how runs are executed: serial, batched, processes, auto, ray, slurm (default: the "
                            "profile's worker processes)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the grid, its estimated cost (and the sbatch file for slurm) without running")
    sweep.add_argument("--address", default=None,
                       help="ray: local (start Ray here; the default), auto (the running cluster) or HOST:PORT")
    sweep.add_argument("--gpus", default=None, help="ray, slurm: GPUs per run (default: the profile's)")
    sweep.add_argument("--partition", default=None, help="slurm: the partition to submit to")
    sweep.add_argument("--time", default=None, help="slurm: time limit per job, minutes or HH:MM:SS (default 60)")
    sweep.add_argument("--slurm-config", default=None,
                       help="slurm: a TOML or JSON file of options (partition, time, gpus, cpus, mem_gb, account, "
                            "qos, setup, ...); flags win over it")
    sweep.add_argument("--slurm-cluster", default=None,
                       help="slurm: slurm (sbatch; the default) or local (the same jobs as processes here)")
    sweep.set_defaults(func=_cmd_sweep)
    train = sub.add_parser("train", help="train one run of an experiment's grid; under torchrun on all its processes "
                                         "(DistributedDataParallel)")
    train.add_argument("experiment", help="an experiment of labkit.experiments, e.g. capacity (chapter 2)")
    train.add_argument("--profile", required=True, help="the profile whose grid holds the run, e.g. full")
    train.add_argument("--index", default=None, help="the run's position in the grid (as sweep --dry-run lists it)")
    train.add_argument("--config", default=None, help="the run's config as JSON (instead of --index)")
    train.add_argument("--cache", default=None, help="folder of finished runs to store the result in "
                                                     "(default: the experiment's sweep cache)")
    train.add_argument("--save-model", default=None, help="write the trained weights to this safetensors file")
    train.add_argument("--backend", default="auto", help="auto (NCCL on GPUs, else gloo), gloo or nccl")
    train.set_defaults(func=_cmd_train)
    models = sub.add_parser("models", help="train some runs of an experiment's grid and keep the trained models as "
                                           "files (results/models/)")
    models.add_argument("experiment", help="an experiment whose runs keep their model, e.g. capacity (chapter 2)")
    models.add_argument("--profile", required=True, help="the profile whose grid holds the runs, e.g. cpu-full")
    models.add_argument("--where", action="append", metavar="KEY=VALUE",
                        help="keep only the configs with this value (JSON or text; repeatable), e.g. exposures=1000")
    models.add_argument("--out", default=None, help="folder of the model files "
                                                    "(default: results/models/<experiment>_<profile>)")
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one ``error: ...`` line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:  # ParameterError included: every bad input names what is allowed
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # papermill's execution errors: one line here, the notebook has the rest
        if type(error).__name__ == "PapermillExecutionError":
            print(f"error: the notebook failed: {getattr(error, 'ename', '')}: {getattr(error, 'evalue', error)}",
                  file=sys.stderr)
            return 1
        raise
