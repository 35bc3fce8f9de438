"""--threads 1 holds for every framework: each worker's CPU time per wall time stays near 1."""

from bench.results import read_env
from tests.conftest import run_rows


def test_every_framework_honours_one_thread(tmp_path):
    proc, rows = run_rows(
        tmp_path,
        "--threads",
        "1",
        "--device",
        "cpu",
        "--shape",
        "4,32,64,64",
        "--preset",
        "smoke",
        "--impl",
        "torch_group_norm",
        "--impl",
        "tf_function",
        "--impl",
        "keras_layer",
        "--impl",
        "jax_jit",
        "--max-time",
        "0.3",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(r.threads == 1 for r in rows)
    workers = read_env(tmp_path / "run.jsonl")["workers"]
    groups = {w["group"] for w in workers}
    assert {"torch/cpu", "tensorflow/cpu", "jax/cpu", "keras-tensorflow/cpu", "keras-jax/cpu"} <= groups
    for w in workers:
        assert w["cpu_per_wall"] <= 1.15, w
