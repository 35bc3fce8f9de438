"""Reading results never crashes on damaged files; a newer schema is a clear error."""

import json

import pytest

from bench.errors import BenchError
from bench.results import SCHEMA_VERSION, ResultsWriter, Row, read_rows


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
    with pytest.raises(BenchError, match=f"schema_version {SCHEMA_VERSION + 1} is newer"):
        read_rows(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        read_rows(tmp_path / "absent.jsonl")
