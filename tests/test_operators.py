"""Operators as a seam: discovered from bench/operators/, named by implementations and rows,
part of every measurement's identity, and not patchable by a measured call."""

import json
import textwrap

import numpy as np
import pytest

from bench import operators
from bench.cases import Case, CaseKey, edge_cases
from bench.check import plan_checks
from bench.errors import BenchError
from bench.registry import Declaration, Impl, declarations, register, sources
from bench.results import SCHEMA_VERSION, read_rows
from tests.conftest import ROOT, cli

GROUP_NORM = sorted(d.name for s in sources(plugins=False) for d in s.declared if d.op == "group_norm")


def test_operators_are_found_in_their_folder_and_unknown_names_say_which_exist():
    ops = operators.operators()
    assert "instance_norm" in ops and ops["instance_norm"].title == "InstanceNorm"
    with pytest.raises(
        BenchError, match="unknown operator 'batch_norm'; expected one of: group_norm, instance_norm"
    ):
        operators.get("batch_norm")


def test_an_operator_cannot_be_patched_through_its_instance_or_the_table():
    """What checks an answer is on classes and modules (the worker's guard watches those)."""
    op = operators.get("instance_norm")
    with pytest.raises(AttributeError):
        op.reference = lambda *a: None  # type: ignore[method-assign]
    with pytest.raises(TypeError):
        operators.operators()["instance_norm"] = op  # type: ignore[index]


def test_harness_code_outside_the_operators_folder_names_no_operator():
    """Everything that is an operator's lives in bench/operators/; the rest of bench/ asks it."""
    named = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "bench").rglob("*.py"))
        if "operators" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        for op in operators.operators()
        if f'"{op}"' in line or f"'{op}'" in line
    ]
    assert named == []
    # The report's texts come from the operators too: its templates name none, nor their semantics.
    words = [w for op in operators.operators().values() for w in (op.title, *op.semantics)]
    words += [w for op in operators.operators().values() for s in op.semantics for w in s.split("/")]
    named = [
        f"{path.name}: {w}"
        for path in sorted((ROOT / "bench" / "templates").glob("*.j2"))
        for w in set(words)
        if w in path.read_text()
    ]
    assert named == []


def test_edge_cases_and_the_reference_come_from_the_cases_operator():
    op = operators.get("instance_norm")
    cases = edge_cases("instance_norm", "cpu", ["NCHW", "NHWC"], 1e-5, ("float32",))
    assert {c.input_kind for c in cases} == {k for k, (_, d) in op.edge_cases.items() if d == "float32"}
    assert all(c.op == "instance_norm" and c.mode == "forward" for c in cases)
    case = Case(shape=(2, 3, 4, 5))
    x = op.make_input(case)
    y = op.reference(x, case).output(op.canonical)
    np.testing.assert_allclose(y.mean(axis=(2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(2, 3)), 1, rtol=1e-3)


def test_a_case_key_names_its_operator_and_reads_keys_written_before_it_did():
    key = Case(shape=(2, 3, 4, 5), op="instance_norm", op_params="").key()
    assert CaseKey.from_json(json.loads(json.dumps(key.to_json()))) == key
    old = ["cpu", "float32", "NCHW", "forward", [2, 3, 4, 5], "random"]  # a submission of schema 3
    assert CaseKey.from_json(old) == key
    other = CaseKey("cpu", "float32", "NCHW", "forward", (2, 3, 4, 5), "random", "group_norm", "num_groups=2")
    assert other != key and other.text() == "group_norm(num_groups=2) 2x3x4x5 float32 NCHW forward"


def test_register_names_a_known_operator_read_from_the_source():
    text = textwrap.dedent("""
        from bench.registry import register

        @register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
        def plain(case):
            return lambda x: x

        @register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", op="instance_norm")
        def named(case):
            return lambda x: x
    """)
    declared, problem = declarations(text, "f")
    assert problem == "" and declared == (Declaration("plain", "torch"), Declaration("named", "torch"))
    assert {d.op for d in declared} == {"instance_norm"}
    bad = text.replace('op="instance_norm"', 'op="batch_norm"')
    assert declarations(bad, "f") == (
        (),
        "unknown operator 'batch_norm'; expected one of: group_norm, instance_norm",
    )
    computed = text.replace('op="instance_norm"', "op=OP")
    assert declarations(computed, "f")[1] == "@register(op=...) of named must be a string literal"
    with pytest.raises(BenchError, match="unknown operator 'batch_norm'"):
        register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", op="batch_norm")


def test_schema_3_rows_read_as_instance_norm(tmp_path):
    row = {
        "impl": "torch_module", "framework": "torch", "backend": "eager", "device": "cpu",
        "dtype": "float32", "layout": "NCHW", "mode": "forward", "shape": [2, 3, 4, 5],
        "status": "ok", "schema_version": 3,
    }  # fmt: skip
    path = tmp_path / "v3.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (got,) = read_rows(path)
    assert got.schema_version == SCHEMA_VERSION == 4
    assert (got.op, got.op_params) == ("instance_norm", "")
    assert got.case_key() == Case(shape=(2, 3, 4, 5)).key()


def test_list_shows_each_implementations_operator_and_filters_by_it():
    out = cli("list", "--impl", "torch_group_norm", "--op", "instance_norm")
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split()[:2] == ["name", "operator"] and row.split()[:2] == [
        "torch_group_norm",
        "instance_norm",
    ]


def test_group_norm_reference_is_torchs_in_float64_and_its_groups_are_its_support():
    torch = pytest.importorskip("torch")
    op = operators.get("group_norm")
    case = Case(shape=(2, 8, 3, 4), mode="train", op="group_norm", op_params="num_groups=2")
    x, g = op.make_input(case), op.make_upstream_grad(case)
    ref = op.reference(x, case, g)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.group_norm(xt, 2, eps=case.eps)
    (dx,) = torch.autograd.grad(yt, xt, torch.from_numpy(g))
    np.testing.assert_allclose(ref.output(op.canonical), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(ref.grad(op.canonical), dx.numpy(), atol=1e-12)
    assert (
        ref.detect(ref.output("unbiased/eps@std").astype(np.float32), "float32").label == "unbiased/eps@std"
    )
    ids, part = op.support(case, 13)  # sample 1, channel 5: the group of channels 4..7
    assert list(ids) == [12, 13, 14, 15] and part.shape == (1, 4, 3, 4) and part.params() == {"num_groups": 1}
    assert op.unplannable((2, 3, 8, 8), {"num_groups": 32}) == "C=3 is not divisible by num_groups=32"
    assert op.variants({"num_groups": (32, 1)}) == [{"num_groups": 32}, {"num_groups": 1}]


def test_a_group_norm_run_plans_each_g_says_once_what_it_skips_and_keys_rows_on_g(tmp_path):
    out = tmp_path / "gn.jsonl"
    got = cli(
        "run", "--impl", "torch_groupnorm", "--op", "group_norm", "--num-groups", "4", "--num-groups", "3",
        "--shape", "2,8,4,4", "--shape", "2,6,4,4", "--device", "cpu", "--max-time", "0.05",
        "--out", str(out),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert (
        got.stderr.count(
            "group_norm(num_groups=4) 2x6x4x4: not planned (C=6 is not divisible by num_groups=4)"
        )
        == 1
    )
    assert got.stderr.count("group_norm(num_groups=3) 2x8x4x4: not planned") == 1
    rows = read_rows(out)
    assert sorted((r.op_params, r.shape) for r in rows) == [
        ("num_groups=3", (2, 6, 4, 4)),
        ("num_groups=4", (2, 8, 4, 4)),
    ]
    assert all(r.status == "ok" and r.correct and r.op == "group_norm" for r in rows), [
        r.message for r in rows
    ]
    assert len({r.key() for r in rows}) == 2


def test_check_runs_a_group_norm_implementation_at_each_g():
    got = cli("check", "torch_groupnorm", "--num-groups", "1", "--num-groups", "64", "--mode", "forward")
    assert got.returncode == 0, got.stdout + got.stderr
    assert "verdict: ok" in got.stdout
    wrong = cli("check", "torch_groupnorm", "--op", "instance_norm")
    assert wrong.returncode == 2 and "torch_groupnorm computes group_norm, not instance_norm" in wrong.stderr


def test_the_report_answers_each_operator_on_its_own(tmp_path):
    """Rows of two operators at one shape: each gets its own answer, verdicts and plots; no best
    is picked across them."""
    out = tmp_path / "two.jsonl"
    got = cli(
        "run", "--impl", "torch_group_norm", "--impl", "torch_layer_norm", "--impl", "torch_groupnorm",
        "--impl", "torch_groupnorm_module", "--op", "instance_norm", "--op", "group_norm",
        "--num-groups", "2", "--shape", "2,4,6,8", "--device", "cpu", "--max-time", "0.02", "--out", str(out),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    from bench import analysis

    a = analysis.analyse(analysis.load([out]))
    assert a.op_labels == ("InstanceNorm", "GroupNorm(2)") and a.show_op
    assert {h.op for h in a.headlines} == {"InstanceNorm", "GroupNorm(2)"}
    for v in a.verdicts:
        group_norm = v.fastest.startswith("torch_groupnorm")
        assert group_norm == (v.config.op == "GroupNorm(2)"), (v.config, v.fastest)
    report = tmp_path / "report"
    assert cli("report", str(out), "--out", str(report)).returncode == 0
    page = (report / "index.html").read_text()
    assert 'data-op="GroupNorm(2)"' in page and 'data-op="InstanceNorm"' in page
    assert "GroupNorm(2) · cpu · forward · float32 · NCHW" in page
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert any(p.startswith("GroupNorm") for p in pngs) and any(p.startswith("InstanceNorm") for p in pngs)


@pytest.mark.parametrize("impl", GROUP_NORM)
def test_every_group_norm_implementation_is_measured_and_correct(impl, group_norm_run):
    _, rows = group_norm_run
    mine = [r for r in rows if r.impl == impl]
    timed = [r for r in mine if r.input_kind == "random" and r.status == "ok"]
    assert timed, f"{impl}: no measured row; {[(r.status, r.message) for r in mine]}"
    for r in timed:
        assert r.op == "group_norm" and r.op_params == "num_groups=2"
        assert r.correct and r.semantics == r.semantics_declared, (
            f"{impl}[{r.backend}] {r.layout} {r.mode}: {r}"
        )
    assert all(r.message for r in mine if r.status != "ok")


def test_a_parameter_no_operator_of_the_run_takes_is_said_once_not_ignored(tmp_path):
    """--num-groups with InstanceNorm's implementations alone: the run and check say once that it is
    not used (it was dropped in silence); with GroupNorm in the run it is used and nothing is said."""
    out = tmp_path / "in.jsonl"
    got = cli(
        "run", "--impl", "torch_module", "--num-groups", "4", "--num-groups", "8", "--shape", "2,8,4,4",
        "--mode", "forward", "--layout", "NCHW", "--device", "cpu", "--max-time", "0.02", "--out", str(out),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    line = "--num-groups 4 8: not used: no operator here takes num_groups (operators: instance_norm)"
    assert got.stderr.count(line) == 1, got.stderr
    assert [(r.op, r.status) for r in read_rows(out)] == [("instance_norm", "ok")]
    notes = {}
    for name, op in (("in_x", "instance_norm"), ("gn_x", "group_norm")):
        impl = Impl(name, "torch", ("NCHW",), "population/eps@sqrt", ("eager",), op=op)
        given = {"num_groups": (4,)}
        _, notes[op] = plan_checks(
            impl, ["cpu"], ["float32"], ["NCHW"], ["forward"], None, 1e-5, False, given
        )
    assert notes["instance_norm"] == [line.replace(" 8:", ":")]
    assert not any("not used" in n for n in notes["group_norm"])
