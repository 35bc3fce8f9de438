"""Bad input through the real CLI: one line on stderr naming the value, exit 2, nothing written."""

import pytest

from tests.conftest import cli

CASES = [
    (["run", "--impl", "nosuch_*"], "--impl 'nosuch_*' matches no implementation"),
    (["list", "--impl", "nosuch_*"], "--impl 'nosuch_*' matches no implementation"),
    (["run", "--shape", "2,3,x,4"], "bad --shape '2,3,x,4'; expected four positive integers"),
    (["run", "--shape", "2,3,0,4"], "bad --shape '2,3,0,4'"),
    (["run", "--shape", "2,3,4"], "bad --shape '2,3,4'"),
    (["run", "--dtype", "float8"], "unknown dtype 'float8'; expected one of: float32, float16, bfloat16"),
    (["run", "--layout", "CHWN"], "unknown layout 'CHWN'"),
    (["run", "--mode", "inference"], "unknown mode 'inference'"),
    (
        ["run", "--op", "batch_norm"],
        "unknown operator 'batch_norm'; expected one of: group_norm, instance_norm",
    ),
    (["list", "--op", "batch_norm"], "unknown operator 'batch_norm'"),
    (["check", "torch_group_norm", "--op", "batch_norm"], "unknown operator 'batch_norm'"),
    (["run", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "--device", "cuda"], "--device 'cuda' requested but this machine has 0 CUDA GPU(s)"),
    (["run", "--device", "tpu"], "bad --device 'tpu'"),
    (["run", "--threads", "999"], "bad --threads 999"),
    (["run", "--out", "/proc/nope/r.jsonl"], "--out '/proc/nope/r.jsonl' is not writable"),
    (["run", "--resume", "/nonexistent/r.jsonl"], "--resume '/nonexistent/r.jsonl': no such results file"),
    (["run", "--max-memory", "lots"], "bad --max-memory 'lots'"),
    (["run", "--max-memory", "infG"], "bad --max-memory 'infG'; expected a positive, finite size"),
    (["run", "--max-memory", "nanG"], "bad --max-memory 'nanG'"),
    (["run", "--max-memory", "1e400"], "bad --max-memory '1e400'"),
    # a size that rounds to 0 bytes would switch the memory watchdog off, as 0 does
    (["run", "--max-memory", "0.5"], "bad --max-memory '0.5'; expected at least 1M"),
    (["run", "--max-memory", "1e-30G"], "bad --max-memory '1e-30G'; expected at least 1M"),
    (["run", "--effective-cache", "0.5"], "bad --effective-cache '0.5'; expected at least 1M"),
    (["run", "--effective-cache", "big"], "bad --effective-cache 'big'"),
    (
        ["run", "--case-timeout", "nan"],
        "bad --case-timeout 'nan'; expected a positive, finite number of seconds",
    ),
    (["run", "--case-timeout", "inf"], "bad --case-timeout 'inf'"),
    (["run", "--import-timeout", "-1"], "bad --import-timeout '-1'"),
    (["run", "--max-time", "nan"], "bad --max-time 'nan'"),
    (["run", "--eps", "nan"], "bad --eps 'nan'; expected a positive, finite number"),
    (["run", "--eps", "inf"], "bad --eps 'inf'"),
    (["check", "torch_group_norm", "--eps", "nan"], "bad --eps 'nan'"),
    (["run", "--impl-path", "/nonexistent/dir"], "--impl-path '/nonexistent/dir' is neither a directory"),
    (["report", "/nonexistent/r.jsonl"], "results file '/nonexistent/r.jsonl' does not exist"),
    (["compare", "/nonexistent/a.jsonl", "/nonexistent/b.jsonl"], "'/nonexistent/a.jsonl' does not exist"),
    (["compare", "a", "b", "--threshold", "lots"], "bad --threshold 'lots'"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    before = set(tmp_path.iterdir())
    proc = cli(*args, env={"CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert set(tmp_path.iterdir()) == before
