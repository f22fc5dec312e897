"""Shared test fixtures: small notebooks written on the fly, the repository root."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

# One torch thread for the whole suite: the tiny models here are memory bound, and on the 2-core CI
# machine a second thread competes with notebook kernels and the site build (up to 10x slower).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


def write_notebook(path: Path, parameters: str, body: str) -> Path:
    """A two-cell notebook: a cell tagged ``parameters`` and a body cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def make_notebook(tmp_path):
    def make(name: str = "00_welcome.ipynb", parameters: str = 'profile = "quick"\nseed = 0\nlr = 0.5',
             body: str = "print(profile, seed)") -> Path:
        return write_notebook(tmp_path / name, parameters, body)

    return make
