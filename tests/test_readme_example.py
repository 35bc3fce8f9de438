"""The README's "Add your implementation" example, executed as written, with its `check` command."""

import re
import shlex

from tests.conftest import ROOT, cli, run_rows


def write_example(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- example:begin -->\s*```python\n(.*?)```\s*<!-- example:end -->", text, re.S)
    assert block, "README lost its example markers"
    impls = tmp_path / "impls"
    impls.mkdir()
    (impls / "torch_var_mean.py").write_text(block.group(1))
    return impls


def test_readme_example_is_measured_and_correct(tmp_path):
    impls = write_example(tmp_path)
    proc, rows = run_rows(
        tmp_path,
        "--impl-path",
        str(impls),
        "--impl",
        "torch_var_mean",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--mode",
        "forward",
        "--mode",
        "train",
        "--layout",
        "NCHW",
        "--layout",
        "NHWC",
        "--dtype",
        "float32",
        "--dtype",
        "float16",
        "--max-time",
        "0.05",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) == 2 * 2 * 2  # 2 shapes x 2 modes x 2 layouts in float32
    assert all(r.correct and r.semantics == "population/eps@sqrt" for r in ok)
    fp16 = [r for r in rows if r.dtype == "float16"]
    assert fp16 and all(r.status == "unavailable" and "dtype float16" in r.message for r in fp16)


def test_readme_check_command_passes_the_example(tmp_path):
    impls = write_example(tmp_path)
    text = (ROOT / "README.md").read_text()
    line = re.search(r"^python -m bench (check torch_var_mean .*?)(?:#.*)?$", text, re.M)
    assert line, "README lost its `python -m bench check` example"
    args = [str(impls) if a == "my_impls" else a for a in shlex.split(line.group(1))]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    # Every declared mode x dtype x layout: 3 x 2 x 2.
    assert "verdict: ok: 12 of 12 checks" in proc.stdout
