"""``python -m labkit``: parameters are validated before a kernel starts, outputs are atomic, and every
subcommand hands its arguments to the module that does the work (``labkit.runner``, ``labkit.profiles``,
``labkit.experiments``).
"""

from __future__ import annotations

import subprocess
import sys
import types

import nbformat
import pytest

from labkit import cli, profiles, runner


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0.5", 0.5), ("true", True), ("False", False), ("full", "full"), ("'x y'", "x y"), ("none", None)],
)
def test_parse_value(text, value):
    assert runner.parse_value(text) == value


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (["-p", "profile", "qiuck"], "profile='qiuck' is not valid; allowed: smoke, quick, full"),
        (["-p", "sead", "3"], "unknown parameter 'sead' for 00_welcome.ipynb; allowed: profile, seed, lr"),
        (["-p", "seed", "three"], "parameter seed='three' has the wrong type; allowed: a int"),
        (["-p", "seed", "1.5"], "parameter seed=1.5 has the wrong type"),
        (["-p", "seed", "-1"], "seed=-1 is not valid"),
        (["-p", "profile", "3"], "parameter profile=3 has the wrong type; allowed: a str"),
    ],
)
def test_bad_parameters_fail_in_one_line_and_write_nothing(make_notebook, tmp_path, params, needle):
    notebook = make_notebook()
    output = tmp_path / "out.ipynb"
    result = run_cli("run", str(notebook), *params, "-o", str(output))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00_welcome.ipynb"]


def test_missing_notebook_is_a_clear_error(tmp_path):
    result = run_cli("run", str(tmp_path / "nope.ipynb"))
    assert result.returncode == 2 and "is not an existing .ipynb file" in result.stderr


def test_float_parameter_accepts_an_int(make_notebook):
    notebook = make_notebook()
    assert runner.validate_parameters(notebook, {"lr": 1}) == {"lr": 1.0}


def test_run_writes_to_a_new_path_and_never_touches_the_input(make_notebook, tmp_path, monkeypatch):
    notebook = make_notebook()
    before = notebook.read_bytes()
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", str(notebook), "-p", "seed", "3", "-p", "profile", "full", "-q")
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "_build" / "runs" / "00_welcome__profile-full__seed-3.ipynb"
    assert f"wrote {expected.relative_to(tmp_path)}" in result.stdout
    executed = nbformat.read(expected, as_version=4)
    assert any("full 3" in out.get("text", "") for cell in executed.cells for out in cell.get("outputs", []))
    assert notebook.read_bytes() == before


def test_failed_run_leaves_no_half_written_output(make_notebook, tmp_path):
    notebook = make_notebook(body="raise RuntimeError('boom')")
    output = tmp_path / "runs" / "out.ipynb"
    result = run_cli("run", str(notebook), "-o", str(output), "-q")
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    assert list(output.parent.iterdir()) == []


def test_in_place_overwrites_only_on_request(make_notebook):
    notebook = make_notebook()
    result = run_cli("run", str(notebook), "--in-place", "-q", "-p", "seed", "5")
    assert result.returncode == 0, result.stderr
    executed = nbformat.read(notebook, as_version=4)
    assert any("quick 5" in out.get("text", "") for cell in executed.cells for out in cell.get("outputs", []))


def test_profiles_command_lists_every_chapter():
    result = run_cli("profiles")
    assert result.returncode == 0 and "00_welcome" in result.stdout and "quick" in result.stdout


def test_profiles_prints_what_describe_returns(monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(profiles, "describe", lambda chapter: asked.append(chapter) or f"about {chapter}",
                        raising=False)
    assert cli.main(["profiles", "00_welcome"]) == 0 and cli.main(["profiles"]) == 0
    assert asked == ["00_welcome", None]
    assert capsys.readouterr().out == "about 00_welcome\nabout None\n"


@pytest.fixture
def sweep_calls(monkeypatch) -> list[tuple[tuple, dict]]:
    """Stand in for ``labkit.experiments.sweep_command``: records its calls, rejects experiment "bogus"."""
    calls: list[tuple[tuple, dict]] = []

    def sweep_command(*args, **kwargs) -> int:
        if args[0] == "bogus":
            raise ValueError("experiment='bogus' is not valid; allowed: capacity")
        calls.append((args, kwargs))
        return 0

    monkeypatch.setitem(sys.modules, "labkit.experiments", types.SimpleNamespace(sweep_command=sweep_command))
    return calls


def test_sweep_passes_every_option(sweep_calls):
    assert cli.main(["sweep", "capacity", "--profile", "cpu-full", "--out", "r.json", "--cache", "c",
                     "--executor", "serial", "--dry-run"]) == 0
    assert cli.main(["sweep", "capacity", "--profile", "quick"]) == 0
    assert cli.main(["sweep", "capacity", "--profile", "full", "--executor", "slurm", "--gpus", "1",
                     "--partition", "gpu", "--time", "2:00:00", "--slurm-config", "s.toml", "--slurm-cluster", "local",
                     "--address", "auto"]) == 0
    none = dict.fromkeys(("address", "gpus", "partition", "time", "slurm_config", "slurm_cluster"))
    assert sweep_calls == [
        (("capacity",), dict(profile="cpu-full", out="r.json", cache="c", executor="serial", dry_run=True,
                             executor_options=none)),
        (("capacity",), dict(profile="quick", out=None, cache=None, executor=None, dry_run=False,
                             executor_options=none)),
        (("capacity",), dict(profile="full", out=None, cache=None, executor="slurm", dry_run=False,
                             executor_options=dict(address="auto", gpus="1", partition="gpu", time="2:00:00",
                                                   slurm_config="s.toml", slurm_cluster="local"))),
    ]


def test_sweep_bad_input_is_one_error_line(sweep_calls, capsys):
    assert cli.main(["sweep", "bogus", "--profile", "quick"]) == 2
    assert capsys.readouterr().err == "error: experiment='bogus' is not valid; allowed: capacity\n"
    with pytest.raises(SystemExit) as exit_:  # argparse: --profile is required
        cli.main(["sweep", "capacity"])
    assert exit_.value.code == 2 and "--profile" in capsys.readouterr().err


def test_the_command_line_imports_no_heavy_module_until_a_command_runs():
    code = "import sys, labkit.cli; labkit.cli.build_parser(); print(sorted({'torch', 'papermill'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
