"""Reading results never crashes on damaged files; a newer schema is a clear error."""

import json

import pytest

from bench.errors import BenchError
from bench.results import SCHEMA_VERSION, ResultsWriter, Row, read_results, read_rows
from tests.conftest import cli


def _row(**kw):
    base = dict(
        impl="torch_module",
        framework="torch",
        backend="eager",
        device="cpu",
        dtype="float32",
        layout="NCHW",
        mode="forward",
        shape=(1, 2, 3, 4),
        status="ok",
    )
    return Row(**{**base, **kw})


def test_round_trip_and_damaged_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(_row(time_median_s=1e-3, samples_s=(1e-3, 2e-3)))
    w.close()
    with open(path, "a") as f:
        f.write("\n\n" + json.dumps({"hello": "world"}) + "\n" + '{"impl": "torch_mo')  # truncated last line
    warnings = []
    rows = read_rows(path, warn=warnings.append)
    assert len(rows) == 1 and rows[0].shape == (1, 2, 3, 4) and rows[0].samples_s == (1e-3, 2e-3)
    assert any(":4: not a normbench row" in w for w in warnings)
    assert any(":5: not valid JSON" in w for w in warnings)
    # Appending after a truncated line starts a fresh line, so the new row is readable.
    w = ResultsWriter(path)
    w.write(_row(impl="torch_view"))
    w.close()
    assert [r.impl for r in read_rows(path, warn=warnings.append)] == ["torch_module", "torch_view"]


def test_newer_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "r.jsonl"
    d = _row().__dict__ | {"schema_version": SCHEMA_VERSION + 1}
    path.write_text(json.dumps(d) + "\n")
    with pytest.raises(
        BenchError, match=f"schema_version {SCHEMA_VERSION + 1}, newer than this normbench reads"
    ):
        read_rows(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        read_rows(tmp_path / "absent.jsonl")


def test_ill_typed_rows_are_skipped_each_named_and_the_good_one_kept():
    from tests.conftest import ROOT

    path = ROOT / "tests" / "data" / "hostile_rows.jsonl"
    warnings = []
    (row,) = read_rows(path, warn=warnings.append)
    assert row.impl == "torch_module" and row.samples_s == (1e-4, 1.1e-4, 0.9e-4)
    shown = [w for w in warnings if ": bad row (" in w or "not a version" in w]
    assert len(shown) == 5 and warnings[-1].endswith("more unusable lines skipped")
    assert warnings[0].startswith(f"{path}:2: bad row (missing shape)")
    assert "shape [2, 3] is not four positive integers" in warnings[1]
    assert "time_median_s is 'fast', expected a time of 0 to 1e+06 s" in warnings[2]


def test_every_bad_pytest_benchmark_entry_is_skipped_with_its_name():
    from tests.conftest import ROOT

    path = ROOT / "tests" / "data" / "hostile_pytest_benchmark.json"
    warnings = []
    (row,) = read_rows(path, warn=warnings.append)
    assert row.samples_s == (1e-4, 2e-4, 3e-4)
    assert any("benchmark 'a': stats is a str, expected an object" in w for w in warnings)
    assert any("benchmark 'b': stats.data is not a list of positive numbers" in w for w in warnings)


def test_a_junk_file_gives_a_count_not_a_flood(tmp_path):
    path = tmp_path / "junk.jsonl"
    path.write_text('{"impl": 1, "schema_version": 2}\n' * 800_000)
    warnings = []
    with pytest.raises(BenchError, match="no usable rows"):
        read_results([path], warn=warnings.append)
    assert len(warnings) == 6 and warnings[-1] == f"{path}: 799995 more unusable lines skipped"


def test_v1_rows_migrate_to_the_roles_v1_knew_by_name(tmp_path):
    path = tmp_path / "v1.jsonl"
    d = _row(impl="torch_compile").__dict__ | {"schema_version": 1}
    d = {k: v for k, v in d.items() if k not in ("roles", "compiled_from", "machine")}
    path.write_text(json.dumps(d, default=list) + "\n")
    (row,) = read_rows(path)
    assert row.compiled_from == "torch_module" and row.schema_version == SCHEMA_VERSION


def test_v2_rows_get_the_bytes_their_buffers_rotated_and_the_report_judges_their_cache_state(tmp_path):
    """A schema-2 file (rows of the CPU sample committed before schema 3, with its sidecar): each
    row's rotated bytes follow from its buffers and case, and its cache state from its run's
    effective cache (128 MiB there)."""
    from bench import analysis
    from tests.conftest import ROOT

    sample = ROOT / "tests" / "data" / "v2_sample.jsonl"
    rows = [r for r in read_rows(sample) if r.status == "ok" and r.input_kind == "random"]
    assert rows and all(r.schema_version == SCHEMA_VERSION and r.cache_state == "" for r in rows)
    small = next(
        r for r in rows if r.shape == (8, 3, 32, 32) and r.mode == "forward" and r.dtype == "float32"
    )
    assert small.rotated_bytes == small.buffers * 8 * 3 * 32 * 32 * 4 == 256 * 96 << 10  # the cap: 24 MiB
    train = next(r for r in rows if r.shape == (4, 64, 128, 128) and r.mode == "train")
    assert train.rotated_bytes == train.buffers * 4 * 64 * 128 * 128 * 4
    ms = {
        (m.variant, m.shape, m.mode, m.dtype, m.layout): m
        for m in analysis.measurements(analysis.load([sample]))
    }
    assert ms[(small.variant, small.shape, "forward", "float32", small.layout)].cache_state == "warm"
    big_fwd = next(m for k, m in ms.items() if k[1] == (4, 64, 128, 128) and k[2] == "forward")
    assert big_fwd.cache_state == "cold" and "partly cached inputs" not in big_fwd.flags


def test_own_kernels_rows_written_before_the_own_role_read_as_declaring_it(tmp_path):
    path = tmp_path / "early.jsonl"
    rows = [_row(impl="numba_fused", roles=()), _row(impl="torch_group_norm", roles=())]
    path.write_text("".join(json.dumps(r.__dict__, default=list) + "\n" for r in rows))
    got = {r.impl: r.roles for r in read_rows(path)}
    assert got == {"numba_fused": ("own",), "torch_group_norm": ()}


def test_a_full_disk_leaves_whole_lines_and_says_how_many_rows_are_safe(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(_row(impl="a"))
    real_write = os.write

    def half_then_full(fd, data):
        if fd == w.fd:
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(BenchError) as err:
        w.write(_row(impl="b"))
    monkeypatch.undo()
    w.close()
    assert (
        str(err.value)
        == f"cannot write {path}: No space left on device; 1 rows are safe in it (the disk is full)"
    )
    assert [r.impl for r in read_rows(path)] == ["a"] and path.read_text().endswith("\n")


def test_a_sidecar_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    from pathlib import Path

    from bench.results import write_env

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(BenchError, match="cannot write .*r.env.json: No space left on device"):
        write_env(tmp_path / "r.jsonl", "run", {"a": 1})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_time_no_call_can_take_is_a_bad_row_not_a_traceback_later(tmp_path):
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(_row(impl="fine", time_median_s=1e-3, samples_s=(1e-3,)))
    w.write(_row(impl="huge", time_median_s=1e308, samples_s=(1e308,)))  # finite, yet no call's time
    w.write(_row(impl="huge_sample", time_median_s=1e-3, samples_s=(1e-3, 1e300)))
    w.close()
    warnings = []
    assert [r.impl for r in read_rows(path, warn=warnings.append)] == ["fine"]
    assert "time_median_s is 1e+308, expected a time of 0 to 1e+06 s" in warnings[0]
    assert "samples_s is not a list of positive numbers up to 1e+06 s" in warnings[1]


def test_a_folder_is_called_a_folder(tmp_path):
    with pytest.raises(BenchError, match="is a directory; expected a .jsonl results file"):
        read_rows(tmp_path)
    (tmp_path / "submission.json").write_text(json.dumps({"out": "/x/merged.jsonl"}))
    with pytest.raises(BenchError, match="a submission's folder: its merged results are /x/merged.jsonl"):
        read_rows(tmp_path)


def test_operator_parameters_that_do_not_parse_make_a_bad_row(tmp_path):
    """A results file someone else wrote: op_params the operators could not parse are a bad row,
    named, and never a traceback from the report or compare later."""
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(_row(impl="fine", op="group_norm", op_params="num_groups=32"))
    for bad in ("num_groups=abc", "junk", "num_groups=0", "num_groups=32,", 32):
        w.write(_row(impl=f"bad {bad}", op="group_norm", op_params=bad))
    w.close()
    warnings = []
    assert [r.impl for r in read_rows(path, warn=warnings.append)] == ["fine"]
    assert (
        len(warnings) == 5 and "op_params 'num_groups=abc' is not name=positive-integer pairs" in warnings[0]
    )
    assert "op_params 32 is not" in warnings[4]
    proc = cli("report", str(path), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0 and "op_params 'junk' is not" in proc.stderr, proc.stderr[-2000:]
