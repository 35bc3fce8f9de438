"""Implementations from outside implementations/: entry-point plugins, --impl-module, --impl-path."""

import os
import textwrap
from pathlib import Path

import pytest

from bench.registry import Declaration, load_one, sources
from tests.conftest import cli, run_rows

PLUGIN = '''
"""A plugin implementation: F.instance_norm from an installed package."""
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", dtypes=("float32",))
def {name}(case):
    eps = case.eps
    return lambda x: F.instance_norm(x, eps=eps)
'''


def make_site(root: Path) -> Path:
    """A directory that is a real installation for importlib.metadata: a *.dist-info with METADATA
    and entry_points.txt beside its modules, as `pip install --target` would leave it."""
    site = root / "site"
    dist = site / "normbench_plugin_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: normbench-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [normbench.implementations]
        torch_plugin_demo = normbench_plugin_demo
        torch_plugin_broken = normbench_plugin_broken
        torch_plugin_exits = normbench_plugin_exits
        fancy = normbench_plugin_fancy
        """)
    )
    (site / "normbench_plugin_demo.py").write_text(PLUGIN.format(name="torch_plugin_demo"))
    (site / "normbench_plugin_broken.py").write_text('raise RuntimeError("plugin exploded on import")\n')
    (site / "normbench_plugin_exits.py").write_text("raise SystemExit(3)\n")
    # No framework prefix anywhere: the declaration alone says torch.
    (site / "normbench_plugin_fancy.py").write_text(PLUGIN.format(name="fancy_norm"))
    return site


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The plugin package, importable here and (through PYTHONPATH) in the CLI and its workers."""
    path = make_site(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(path))
    monkeypatch.syspath_prepend(str(path))
    return path


def test_entry_points_are_sources_and_broken_ones_are_unavailable(site):
    plugins = {s.stem: s for s in sources() if s.kind == "entry_point"}
    demo = plugins["torch_plugin_demo"]
    assert demo.ref == "torch_plugin_demo=normbench_plugin_demo" and demo.frameworks == ("torch",)
    assert plugins["fancy"].declared == (Declaration("fancy_norm", "torch"),)
    (broken,) = load_one(plugins["torch_plugin_broken"], "torch")
    (exits,) = load_one(plugins["torch_plugin_exits"], "torch")
    (fancy,) = load_one(plugins["fancy"], "torch")
    assert broken.unavailable == "RuntimeError: plugin exploded on import"
    assert broken.source == "plugin torch_plugin_broken=normbench_plugin_broken"
    assert exits.unavailable == "SystemExit: 3"
    assert (
        fancy.name == "fancy_norm"
        and not fancy.unavailable
        and fancy.source == "plugin fancy=normbench_plugin_fancy"
    )


def test_list_says_where_each_implementation_comes_from(site):
    # Named, so that only the torch probe imports (PYTHONPATH is new: nothing is in the probe memo)
    names = ("torch_plugin_*", "fancy_norm", "torch_instance_norm")
    proc = cli("list", *(a for n in names for a in ("--impl", n)), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "plugin torch_plugin_demo=normbench_plugin_demo" in lines["torch_plugin_demo"]
    assert lines["torch_plugin_demo"].endswith("available")
    assert "unavailable: RuntimeError: plugin exploded on import" in lines["torch_plugin_broken"]
    assert "unavailable: SystemExit: 3" in lines["torch_plugin_exits"]
    assert (
        lines["fancy_norm"].endswith("available")
        and "plugin fancy=normbench_plugin_fancy" in lines["fancy_norm"]
    )
    assert "built-in" in lines["torch_instance_norm"]


def test_plugin_and_module_implementations_are_measured_and_reported(site, tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "torch_module_demo.py").write_text(PLUGIN.format(name="torch_module_demo"))
    files = tmp_path / "files"
    files.mkdir()
    (files / "torch_file_demo.py").write_text(PLUGIN.format(name="torch_file_demo"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(mods)]))
    proc, rows = run_rows(
        tmp_path,
        "--impl-module",
        "torch_module_demo",
        "--impl-path",
        str(files),
        "--impl",
        "torch_*_demo",
        "--impl",
        "fancy_norm",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--max-time",
        "0.05",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_impl: dict[str, list] = {}
    for r in rows:
        by_impl.setdefault(r.impl, []).append(r)
    assert set(by_impl) == {"torch_plugin_demo", "torch_module_demo", "torch_file_demo", "fancy_norm"}
    for impl_rows in by_impl.values():
        assert len(impl_rows) == 2 and all(r.status == "ok" and r.correct for r in impl_rows), [
            (r.impl, r.mode, r.status, r.correct, r.message) for r in impl_rows
        ]
    assert by_impl["torch_plugin_demo"][0].source == "plugin torch_plugin_demo=normbench_plugin_demo"
    assert by_impl["torch_module_demo"][0].source == "module torch_module_demo"
    assert by_impl["torch_file_demo"][0].source == f"file {files / 'torch_file_demo.py'}"
    report = cli("report", str(tmp_path / "run.jsonl"), "--out", str(tmp_path / "report"), timeout=600)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "report" / "index.html").read_text()
    for name in by_impl:
        assert name in page
