"""The README's "Add an operator", done as it says: RMSNorm over the channels of each pixel (no
groups, its own reference, gradient, semantics, edge cases and preset) and one implementation, from
a folder of their own, checked, measured and reported with no edit under bench/. Then the other
ways in (an entry point) and what a bad operator gets: a one-line error naming it."""

import os
import re
import subprocess

import pytest

from bench import cli as cli_module
from bench import operators
from bench.cases import preset_shapes, preset_timing_name, presets
from bench.errors import BenchError
from bench.timing import preset_timing
from tests.conftest import ROOT, cli, run_rows

# Declares the semantics the operator's detector must tell apart from what it computes.
MISLABELLED = """
import torch

from bench.registry import register


@register(op="rms_norm", framework="torch", layout="NCHW", semantics="eps@rms", modes=("forward",))
def torch_rms_norm_mislabelled(case):
    return lambda x: x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + case.eps)
"""
# Changes the operator's reference for whoever is checked after it.
PATCHER = """
import sys

import torch

from bench.registry import register

sys.modules["normbench_op_rms_norm"].RMSReference._output = lambda self, semantics: self.x


@register(op="rms_norm", framework="torch", layout="NCHW", semantics="eps@sqrt", modes=("forward",))
def torch_rms_norm_patcher(case):
    return lambda x: x.clone()
"""


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}:begin -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert block, f"README lost its {name} markers"
    return block.group(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("operator")
    ops, impls = tmp / "my_ops", tmp / "my_impls"
    ops.mkdir()
    impls.mkdir()
    (ops / "rms_norm.py").write_text(readme_block("operator"))
    (impls / "torch_rms_norm.py").write_text(readme_block("operator-impl"))
    (impls / "torch_rms_norm_mislabelled.py").write_text(MISLABELLED)
    (impls / "torch_rms_norm_patcher.py").write_text(PATCHER)
    return tmp, ops, impls


def bench_tree() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout


def test_the_readme_operator_is_listed_checked_measured_and_reported(folders):
    tmp, ops, impls = folders
    before = bench_tree()
    paths = ["--op-path", str(ops), "--impl-path", str(impls)]
    listed = cli("list", *paths, "--op", "rms_norm")
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("torch_rms_norm "))
    assert line.split()[1:3] == ["rms_norm", "torch"] and "eps@sqrt" in line and line.endswith("available")

    checked = cli("check", "torch_rms_norm", *paths)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "semantics eps@sqrt as declared" in checked.stdout and "zero" in checked.stdout

    proc, rows = run_rows(
        tmp, *paths, "--impl", "torch_rms_norm*", "--shape", "2,16,8,8", "--shape", "1,64,4,4",
        "--mode", "forward", "--mode", "train", "--layout", "NCHW", "--layout", "NHWC",
        "--max-time", "0.05", "--preset", "smoke", "--edge",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r.op for r in rows} == {"rms_norm"} and {r.op_params for r in rows} == {""}
    mine = [r for r in rows if r.impl == "torch_rms_norm"]
    timed = [r for r in mine if r.input_kind == "random"]
    assert len(timed) == 2 * 2 * 2 and all(r.status == "ok" and r.correct for r in timed)
    assert all(r.semantics == "eps@sqrt" and r.canonical_rel_err < 2e-4 for r in timed)
    edge = {(r.input_kind, r.layout): r for r in mine if r.input_kind != "random"}
    assert set(edge) == {(k, lay) for k in ("zero", "fp16_range") for lay in ("NCHW", "NHWC")}
    assert all(r.status == "ok" and r.correct for r in edge.values())

    # The operator's detector, not the normalizations': the declaration is held against the output.
    wrong = [r for r in rows if r.impl == "torch_rms_norm_mislabelled" and r.status != "unavailable"]
    wrong = [r for r in wrong if r.input_kind == "random"]
    assert wrong and all(r.status == "ok" and not r.correct and r.semantics == "eps@sqrt" for r in wrong)
    assert all(r.semantics_mismatch for r in wrong)
    # The operator's classes are watched like normbench's own: patching its reference is caught.
    patched = [r for r in rows if r.impl == "torch_rms_norm_patcher" and r.status != "unavailable"]
    assert patched and all(r.status == "error" for r in patched)
    assert "operator:normbench_op_rms_norm.RMSReference._output replaced" in patched[0].message

    # The report finds the operator from the results (no --op-path) and describes it.
    out = tmp / "report"
    reported = cli("report", str(tmp / "run.jsonl"), "--out", str(out))
    assert reported.returncode == 0, reported.stderr[-3000:]
    page = (out / "index.html").read_text()
    assert "canonical RMSNorm is <code>eps@sqrt</code>" in page
    assert "eps under the sqrt, or added to the root mean square" in page
    assert "all zeros: eps alone keeps 0 / 0 away" in page
    assert "torch_rms_norm_mislabelled" in page and "MISMATCH" in page
    assert "InstanceNorm" not in page and "population" not in page
    # Only PyTorch implementations exist: the answer says Keras was not measured, not that it failed.
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Only PyTorch was measured here (best: torch_rms_norm): no Keras implementation" in text
    assert "were all wrong" not in text
    assert bench_tree() == before


def test_an_operators_preset_is_its_own_and_every_operator_can_take_it(folders, monkeypatch):
    _, ops, _ = folders
    monkeypatch.setenv(operators.PATH_ENV, str(ops))
    assert "llm" in presets() and "unet" in presets()
    assert preset_shapes("llm", "cpu", "rms_norm") == [(4, 1024, 8, 8), (1, 4096, 4, 4)]
    assert preset_shapes("llm", "cpu", "instance_norm") == [(4, 1024, 8, 8), (1, 4096, 4, 4)]
    assert preset_shapes("unet", "cpu", "group_norm")[0] == (2, 320, 32, 32)
    # Each preset samples for as long as its operator says (a shared preset's timing), "full" unsaid.
    assert [preset_timing_name(p) for p in ("llm", "unet", "smoke")] == ["quick", "full", "smoke"]
    assert cli_module.new_config({"preset": "llm"}, None, False).settings == preset_timing("quick")
    assert preset_shapes("smoke", "cpu", "rms_norm") == preset_shapes("smoke", "cpu", "instance_norm")


def test_an_operator_from_an_entry_point(folders, tmp_path):
    _, ops, _ = folders
    site = tmp_path / "site"
    (site / "my_rms").mkdir(parents=True)
    (site / "my_rms" / "__init__.py").write_text((ops / "rms_norm.py").read_text())
    info = site / "my_rms-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rms\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[normbench.operators]\nrms_norm = my_rms\n")
    listed = cli("list", "--impl", "torch_instance_norm", env={"PYTHONPATH": str(site)})
    assert listed.returncode == 0, listed.stderr
    bad = cli("list", "--op-path", str(ops), env={"PYTHONPATH": str(site)})
    assert bad.returncode == 2
    assert "operator 'rms_norm' of entry point rms_norm=my_rms is already defined by" in bad.stderr
    assert str(ops / "rms_norm.py") in bad.stderr


@pytest.mark.parametrize(
    "text, error",
    [
        ("x = 1\n", "defines no OPERATOR, an instance of bench.operators.Operator"),
        ("raise ImportError('no such thing')\n", "ImportError: no such thing"),
        (
            "from bench.operators.instance_norm import InstanceNorm\n\n\n"
            "class Stateful(InstanceNorm):\n    name = 'stateful'\n\n\nOPERATOR = Stateful()\n",
            "Stateful and each class it derives from must set __slots__ = ()",
        ),
        (
            "from bench.operators.instance_norm import InstanceNorm\n\n\n"
            "class Twin(InstanceNorm):\n    __slots__ = ()\n\n\nOPERATOR = Twin()\n",
            "operator 'instance_norm' of",
        ),
        (
            "from bench.operators.instance_norm import InstanceNorm\n\n\n"
            "class Odd(InstanceNorm):\n    __slots__ = ()\n    name = 'odd'\n    canonical = 'eps@sqrt'\n\n\n"
            "OPERATOR = Odd()\n",
            "canonical 'eps@sqrt' is not one of its semantics",
        ),
        (
            "from bench.operators.group_norm import GroupNorm\n\n\n"
            "class Slow(GroupNorm):\n    __slots__ = ()\n    name = 'slow'\n"
            "    preset_timing = {'unet': 'long'}\n\n\nOPERATOR = Slow()\n",
            "bad preset_timing 'unet': 'long'; expected one of its presets (unet) and one of: smoke, quick, "
            "full",
        ),
    ],
)
def test_a_bad_operator_file_is_one_line_naming_it(tmp_path, text, error):
    (tmp_path / "bad_op.py").write_text(text)
    with pytest.raises(BenchError, match=re.escape(error)) as caught:
        operators.use_paths([str(tmp_path)])
    assert "bad_op.py" in str(caught.value) and "\n" not in str(caught.value)
    assert operators.PATH_ENV not in os.environ  # as it was: nothing of a bad path is kept
    proc = cli("list", "--op-path", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and error in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_op_path_is_an_error_before_anything_runs(tmp_path):
    proc = cli("run", "--op-path", str(tmp_path / "nope"), "--out", str(tmp_path / "r.jsonl"))
    assert (
        proc.returncode == 2
        and "--op-path" in proc.stderr
        and "neither a directory nor a .py file" in proc.stderr
    )
    assert not (tmp_path / "r.jsonl").exists()
