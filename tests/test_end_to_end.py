"""One smoke sweep through the real CLI; every implementation is judged from its own rows."""

import html
import json

import pytest

from bench.registry import sources
from bench.results import STATUSES, read_env
from bench.stats import row_limit
from tests.conftest import cli, run_rows

DECLARED = {d.name: d.op for s in sources(plugins=False) for d in s.declared}
BUILT_IN = sorted(name for name, op in DECLARED.items() if op == "instance_norm")


def rows_of(rows, impl):
    return [r for r in rows if r.impl == impl]


@pytest.mark.parametrize("impl", BUILT_IN)
def test_every_implementation_has_a_row_per_case(impl, smoke_run):
    _, rows = smoke_run
    mine = rows_of(rows, impl)
    assert mine, f"{impl} produced no row"
    assert {r.status for r in mine} <= set(STATUSES)
    keys = [r.key() for r in mine]
    assert len(keys) == len(set(keys)), "a case was measured twice"
    for r in mine:
        if r.status != "ok":
            assert r.message, f"{impl} {r.status} without a reason"
        # No built-in cheats: the parent's clock check must never call one a cheat (seen here once,
        # when the witness began before each round's untimed first call)
        assert "its clock disagrees" not in r.message, f"{impl} {r.mode} {r.layout} {r.dtype}: {r.message}"


@pytest.mark.parametrize("impl", BUILT_IN)
def test_measured_outputs_and_gradients_match_the_reference(impl, smoke_run):
    _, rows = smoke_run
    for r in rows_of(rows, impl):
        if r.status != "ok" or r.input_kind != "random":
            continue
        label = f"{impl}[{r.backend}] {r.mode} {r.layout} {r.dtype}"
        assert r.correct, f"{label}: max_rel_err {r.max_rel_err} > {r.tolerance}; {r.message}"
        if r.dtype == "float32":
            assert r.semantics == r.semantics_declared, f"{label}: detected {r.semantics}"
        else:  # low precision can leave two candidates tied; the declared one must be among them
            assert not r.semantics_mismatch, f"{label}: detected {r.semantics}"
        assert r.time_median_s > 0 and r.n_samples >= 3 and len(r.samples_s) == r.n_samples
        assert r.first_call_s > 0 and r.stop_reason in ("converged", "max_time", "max_samples")
        assert r.extra_mem_bytes is not None and r.peak_mem_bytes >= r.extra_mem_bytes


def test_the_article_snippets_disagree_on_semantics(smoke_run):
    _, rows = smoke_run
    sem = {
        r.impl: r.semantics
        for r in rows
        if r.status == "ok" and r.input_kind == "random" and r.dtype == "float32"
    }
    assert sem["keras_lambda"] == "population/eps@std"
    assert sem["torch_view"] == sem["torch_module"] == "unbiased/eps@std"
    assert sem["torch_instance_norm"] == "population/eps@sqrt"


def test_keras_runs_on_each_backend_in_its_own_row(smoke_run):
    _, rows = smoke_run
    assert {r.backend for r in rows if r.impl == "keras_layer" and r.status == "ok"} == {
        "tensorflow",
        "jax",
        "torch",
    }


def test_keras_layer_norm_on_torch_backend_is_an_error_row_not_a_stop(smoke_run):
    _, rows = smoke_run
    bad = [r for r in rows if r.impl == "keras_layer_norm" and r.backend == "torch" and r.layout == "NHWC"]
    assert bad and all(r.status == "error" and "normalized_shape" in r.message for r in bad)
    assert "\x1b" not in bad[0].message


def test_edge_cases_are_checked_per_implementation(smoke_run):
    _, rows = smoke_run
    edge = {
        (r.impl, r.backend, r.input_kind): r for r in rows if r.input_kind != "random" and r.layout == "NCHW"
    }
    # The unbiased std of a 1x1 plane is 0/0: the article's PyTorch snippets return NaN there.
    assert edge[("torch_module", "eager", "one_pixel")].nonfinite_outputs > 0
    assert edge[("torch_group_norm", "eager", "one_pixel")].correct
    assert edge[("torch_group_norm", "eager", "constant")].correct
    assert edge[("torch_group_norm", "eager", "large_offset")].correct
    assert edge[("torch_instance_norm", "eager", "one_pixel")].status == "error"


def test_every_mode_dtype_and_layout_is_a_row(smoke_run):
    _, rows = smoke_run
    random = [r for r in rows if r.input_kind == "random"]
    assert {(r.mode, r.dtype, r.layout) for r in random} == {
        (m, d, lay)
        for m in ("forward", "backward", "train")
        for d in ("float32", "float16", "bfloat16")
        for lay in ("NCHW", "NHWC")
    }
    ok_low = {r.impl for r in random if r.status == "ok" and r.dtype != "float32"}
    assert "torch_group_norm" in ok_low and "jax_jit" in ok_low


def test_unsupported_combinations_are_rows_with_reasons(smoke_run):
    _, rows = smoke_run
    nhwc_view = [r for r in rows if r.impl == "torch_view" and r.layout == "NHWC"]
    assert nhwc_view and all(r.status == "unavailable" and "layout NHWC" in r.message for r in nhwc_view)


def test_env_sidecar_and_speed_of_light(smoke_run):
    path, rows = smoke_run
    env = read_env(path)
    assert env["copy_gbps"]["cpu"] > 0 and len(env["copy_gbps_samples"]["cpu"]) >= 2
    cache = env["cache"]["cpu"]
    assert (
        cache["given"] and cache["effective_cache_bytes"] == 32 << 20 and cache["rotation_bytes"] == 64 << 20
    )
    assert not cache["sweep"] and not cache["rotation_short"] and cache["plateau_check_gbps"] > 0
    assert env["config"]["modes"] == ["forward", "backward", "train"]
    assert env["packages"]["python"] and env["cpu_model"] and env["finished"]
    assert "torch" in env["versions"]
    ok = [r for r in rows if r.status == "ok" and r.input_kind == "random"]
    assert ok and all(r.achieved_gbps for r in ok)
    # a fraction exactly where the row's limit is known (a smoke run's short limits may not be)
    assert all((r.sol_fraction is not None) == (row_limit(r, env)[0] is not None) for r in ok)
    assert all(r.threads == env["threads"] for r in rows)
    # every timed row's case has its own limit: its framework's copy, timed beside it
    assert all(r.limit_how.endswith("into fresh outputs, timed beside it") for r in ok)
    assert all(r.limit_gbps > 0 and r.limit_rel_ci is not None for r in ok)
    calibration = [r for r in ok if r.impl == "torch_copy"]
    assert calibration and all(r.roles == ("calibration",) and r.semantics == "copy" for r in calibration)


def test_report_renders_from_the_run(smoke_report):
    page = smoke_report.read_text()
    assert "Verdict" in page and "PyTorch vs Keras" in page
    pngs = list(smoke_report.parent.glob("*.png"))
    assert len(pngs) >= 6
    assert (smoke_report.parent / "results.csv").stat().st_size > 0


def test_compare_same_run_is_same_and_slowed_copy_is_slower(smoke_run, tmp_path):
    path, rows = smoke_run
    same = cli("compare", str(path), str(path))
    assert same.returncode == 0, same.stdout + same.stderr
    assert " slower" not in same.stdout.split("summary:")[0]
    slowed = tmp_path / "slowed.jsonl"
    with open(path) as src, open(slowed, "w") as dst:
        for line in src:
            d = json.loads(line)
            if d["impl"] == "torch_group_norm" and d["status"] == "ok" and d["samples_s"]:
                d["samples_s"] = [s * 1.5 for s in d["samples_s"]]
                d["time_median_s"] *= 1.5
            dst.write(json.dumps(d) + "\n")
    worse = cli("compare", str(path), str(slowed), "--threshold", "5%")
    assert worse.returncode == 1
    slower = [ln for ln in worse.stdout.splitlines() if ln.rstrip().endswith("slower")]
    assert slower and all(ln.startswith("torch_group_norm") for ln in slower)


@pytest.mark.parametrize(
    "effective, rotated, state",
    [("32M", 11 * (6 << 20), "cold"), ("1G", 256 * (6 << 20), "partly cached")],
    ids=["small-cache-host", "big-cache-host"],
)
def test_a_rows_cache_state_is_what_it_rotated_on_a_simulated_host(tmp_path, effective, rotated, state):
    """6 MiB inputs: a 32 MiB cache is cold at 11 buffers (66 MiB); a 1 GiB cache would need 342,
    over the 256-buffer cap (1.5 GiB), so the row says partly cached; the run, its sidecar and its
    report say what the cold policy did."""
    proc, rows = run_rows(
        tmp_path, "--impl", "torch_group_norm", "--shape", "1,96,128,128", "--device", "cpu",
        "--max-time", "0.02", "--preset", "smoke", "--effective-cache", effective, "--threads", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = rows
    assert (row.cache_policy, row.rotated_bytes, row.cache_state) == ("cold", rotated, state)
    env = read_env(tmp_path / "run.jsonl")
    assert env["cache"]["cpu"]["given"] and env["effective_cache_bytes"]["cpu"] == (
        32 << 20 if effective == "32M" else 1 << 30
    )
    assert "twice the" in proc.stderr and "effective cache (given with --effective-cache)" in proc.stderr
    report = cli("report", str(tmp_path / "run.jsonl"), "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    page = html.unescape((tmp_path / "rep" / "index.html").read_text())
    assert "given with --effective-cache, not swept" in page
    assert ("Inputs not cold" in page) == (state != "cold")
