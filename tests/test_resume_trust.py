"""What `--resume` reads from files someone else may have written: a sidecar's run configuration and
a submission's manifest are checked as the command line checks its options (one line, exit 2, the
file untouched); a resume says which code it will import; `--out` never appends to a file that is
not normbench's results. In-process: every refusal comes before anything is measured."""

from __future__ import annotations

import json
import math

import pytest

from bench import operators
from bench.cli import main
from bench.cluster import MANIFEST_FORMAT
from bench.results import ResultsWriter, write_env
from bench.runner import RunConfig
from tests.test_add_an_operator import readme_block
from tests.test_shards import row

GOOD = RunConfig(impl_globs=("numpy_two_pass",), shapes=((2, 3, 8, 8),), threads=1, max_memory_bytes=1 << 30)

BAD_CONFIGS = [
    ({"case_timeout_s": math.nan}, "bad --case-timeout nan; expected a positive, finite number"),
    ({"import_timeout_s": -1}, "bad --import-timeout -1"),
    ({"eps": math.inf}, "bad --eps inf; expected a positive, finite number"),
    ({"shapes": "abc"}, "bad shapes 'abc'; expected a list of N,C,H,W lists"),
    ({"shapes": [[2, 3, "x", 8]]}, "bad --shape [2, 3, 'x', 8]; expected four positive integers N,C,H,W"),
    ({"shapes": [[2, 3, 0, 8]]}, "bad --shape '2,3,0,8'"),
    ({"threads": 10**6}, "bad --threads 1000000; expected an integer 1.."),
    ({"threads": True}, "bad --threads True"),
    ({"modes": ["sideways"]}, "unknown mode 'sideways'; expected one of: forward, backward, train"),
    ({"dtypes": "float32"}, "bad dtypes 'float32'; expected a list of non-empty strings"),
    ({"devices": ["tpu"]}, "bad --device 'tpu'; expected cpu or cuda:N"),
    ({"preset": 7}, "unknown preset '7'"),
    ({"max_memory_bytes": 0}, "bad --max-memory 0; expected an integer 1048576.."),
    ({"effective_cache_bytes": 12.5}, "bad --effective-cache 12.5"),
    ({"impl_paths": ["/nonexistent"]}, "--impl-path '/nonexistent' is neither a directory nor a .py file"),
    ({"settings": {"max_time_s": math.nan}}, "bad timing max_time_s nan"),
    ({"settings": {"min_samples": 0}}, "bad timing min_samples 0; expected an integer >= 1"),
    ({"settings": {"min_time_s": 5.0, "max_time_s": 1.0}}, "expected min_time_s <= max_time_s"),
    ({"settings": []}, "bad timing settings []; expected a JSON object"),
    ({"shard": "3/2"}, "bad --shard '3/2'"),
    ({"edge": "yes"}, "bad edge 'yes'; expected true or false"),
]


def results(tmp_path, config):
    out = tmp_path / "r.jsonl"
    w = ResultsWriter(out)
    w.write(row("numpy_two_pass", shape=(2, 3, 8, 8), run_id="r1"))
    w.close()
    write_env(out, "r1", {"run_id": "r1", "config": config})
    return out


@pytest.mark.parametrize("change,message", BAD_CONFIGS, ids=[m[:40] for _, m in BAD_CONFIGS])
def test_a_sidecars_run_configuration_is_checked_as_the_command_line_checks_it(change, message, tmp_path,
                                                                                  capsys):  # fmt: skip
    out = results(tmp_path, {**GOOD.to_json(), **change})
    before = out.read_bytes()
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --resume '{out}': the run configuration in r.env.json: "), line
    assert message in line
    assert out.read_bytes() == before


def submission(tmp_path, **change):
    folder = tmp_path / "jobs"
    folder.mkdir(exist_ok=True)
    doc = {"format": MANIFEST_FORMAT, "run_id": "r1", "plan_id": "p", "config": GOOD.to_json(),
           "options": {"executor": "local", "time_min": 10}, "out": str(tmp_path / "merged.jsonl"),
           "jobs": {"numpy/cpu": {"groups": ["numpy/cpu"], "file": "shard-numpy-cpu.jsonl", "submitted": []}},
           **change}  # fmt: skip
    (folder / "submission.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


@pytest.mark.parametrize(
    "change,message",
    [
        ({"out": 5}, "submission.json: bad out 5; expected the path of the merged results file"),
        ({"run_id": ""}, "submission.json: bad run_id ''"),
        ({"options": {"executor": "pbs"}}, "submission.json: bad executor 'pbs'; expected local or slurm"),
        ({"options": {"time_min": "x"}}, "submission.json: bad time_min 'x'; expected an integer >= 1"),
        ({"jobs": [1]}, "submission.json: bad jobs [1]; expected a JSON object"),
        ({"config": {**GOOD.to_json(), "case_timeout_s": math.nan}},
         "the run configuration in submission.json: bad --case-timeout nan"),
        ({"config": [1]}, "the run configuration in submission.json: expected a JSON object, not list"),
    ],
)  # fmt: skip
def test_a_submission_manifest_is_checked_before_anything_is_submitted(change, message, tmp_path, capsys):
    folder = submission(tmp_path, **change)
    assert main(["run", "--resume", str(folder)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --resume '{folder}': ") and message in line, line
    assert not (tmp_path / "merged.jsonl").exists() and sorted(p.name for p in folder.iterdir()) == [
        "submission.json"
    ]


def test_a_resume_never_overwrites_a_file_that_is_not_its_submissions_results(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    other = results(tmp_path, GOOD.to_json())  # normbench's, of another run (r1, not r2)
    for target in (notes, other):
        before = target.read_bytes()
        folder = submission(tmp_path, out=str(target), run_id="r2")
        assert main(["run", "--resume", str(folder)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"its out '{target}' is not this submission's results (run r2)" in line
        assert target.read_bytes() == before
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "submission.json").write_text("{not json")
    assert main(["run", "--resume", str(folder)]) == 2
    assert "submission.json is not valid JSON" in capsys.readouterr().err


def test_out_never_appends_to_a_file_that_is_not_normbench_results(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert main(["run", "--out", str(notes), "--impl", "numpy_two_pass", "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"error: --out '{notes}' exists and is not a normbench results file (its first line is "
                    "no row); choose another path")  # fmt: skip
    assert notes.read_text() == "my notes\n"


def test_a_resume_says_which_code_it_imports(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(operators.PATH_ENV, "")  # the resume adds its operators' folder here
    impls, ops = tmp_path / "impls", tmp_path / "ops"
    impls.mkdir()
    ops.mkdir()
    (ops / "rms_norm.py").write_text(readme_block("operator"))
    config = {
        "impl_paths": [str(impls)],
        "op_paths": [str(ops)],
        "ops": ["rms_norm"],
        "impl_globs": ["nothing_here"],
    }
    out = results(tmp_path, {**GOOD.to_json(), **config})
    assert main(["run", "--resume", str(out)]) == 2  # its glob matches nothing: refused after saying so
    err = capsys.readouterr().err
    assert f"resume of {out} imports code from: --impl-path {impls}, --op-path {ops}" in err
    (ops / "rms_norm.py").unlink()
    ops.rmdir()
    assert main(["run", "--resume", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        line.startswith(f"error: --resume '{out}'")
        and f"--op-path '{ops}' is neither a directory nor a .py file" in line
    )
