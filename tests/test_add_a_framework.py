"""The README's "Add a framework", done as it says: two files in bench/frameworks/ (a description and
an adapter, here a twin of NumPy's) and an implementation declaring the new framework. No other file
changes; the new framework is discovered, probed, measured and reported."""

import re

import pytest

from bench.registry import IMPL_DIR
from tests.conftest import ROOT, cli, run_rows

FRAMEWORKS = ROOT / "bench" / "frameworks"
IMPL = '''
"""Twin: NumPy's two-pass normalization, declared for the new framework."""
import numpy as np

from bench.registry import register


@register(framework="numpy_twin", layout="NCHW", std="population", eps_at="sqrt", devices=("cpu",))
def twin_two_pass(case):
    eps = case.eps

    def forward(x):
        centered = x - x.mean(axis=(2, 3), keepdims=True)
        return centered / np.sqrt((centered * centered).mean(axis=(2, 3), keepdims=True) + eps)

    return forward
'''


@pytest.fixture
def twin_framework():
    readme = (ROOT / "README.md").read_text()
    assert "## Add a framework" in readme and "bench/frameworks/numpy.py" in readme
    description = (FRAMEWORKS / "numpy.py").read_text()
    description = re.sub(r'name = "numpy"', 'name = "numpy_twin"', description)
    description = re.sub(r'tensors = "numpy"', 'tensors = "numpy_twin"', description)
    description = description.replace('legacy_prefix = "numpy"', 'legacy_prefix = ""')
    added = [FRAMEWORKS / "numpy_twin.py", FRAMEWORKS / "numpy_twin_adapter.py"]
    added[0].write_text(description)
    added[1].write_text(
        (FRAMEWORKS / "numpy_adapter.py").read_text().replace('name = "numpy"', 'name = "numpy_twin"')
    )
    try:
        yield
    finally:
        for path in added:
            path.unlink(missing_ok=True)


def test_two_files_and_an_implementation_add_a_framework(twin_framework, tmp_path):
    impls = tmp_path / "impls"
    impls.mkdir()
    (impls / "twin.py").write_text(IMPL)
    listed = cli("list", "--impl-path", str(impls), "--impl", "twin_*")
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("twin_two_pass"))
    assert "numpy_twin" in line and line.endswith("available")
    assert "numpy_two_pass" not in listed.stdout  # --impl: only the twin was imported and listed
    proc, rows = run_rows(
        tmp_path, "--impl-path", str(impls), "--impl", "twin_two_pass", "--shape", "2,3,8,8",
        "--mode", "forward", "--mode", "train", "--device", "cpu", "--max-time", "0.05", "--preset", "smoke",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {r.mode: r for r in rows}
    assert by["forward"].status == "ok" and by["forward"].correct and by["forward"].framework == "numpy_twin"
    assert (
        by["train"].status == "unavailable" and by["train"].message == "NumPy has no autograd: forward only"
    )
    assert not (IMPL_DIR / "twin.py").exists()
