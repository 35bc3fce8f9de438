"""The GPU path's pieces that a CPU can check: the clocks' order of operations (with a fake CUDA),
the summary of a committed GPU run, and tools/gpu-run.sh's bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

H200 = ROOT / "results" / "h200" / "h200.jsonl"


class FakeCuda:
    """Records what the clock asks of CUDA, in order; an event's time is the fake GPU's clock."""

    def __init__(self, cycles_per_s: float = 2e9) -> None:
        self.log: list[tuple[str, float]] = []
        self.now_s = 0.0
        self.cycles_per_s = cycles_per_s
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                self.at = 0.0

            def record(self) -> None:
                self.at = fake.now_s
                fake.log.append(("record", fake.now_s))

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, other: Event) -> float:
                return (other.at - self.at) * 1e3

        self.Event = Event

    def synchronize(self) -> None:
        self.log.append(("sync", 0.0))

    def _sleep(self, cycles: int) -> None:
        self.log.append(("sleep", cycles))
        self.now_s += cycles / self.cycles_per_s


def test_the_cuda_clock_holds_the_stream_for_longer_than_the_host_takes_to_enqueue(monkeypatch):
    torch_adapter = pytest.importorskip("bench.frameworks.torch_adapter")
    cuda = FakeCuda()
    monkeypatch.setattr(torch_adapter.torch, "cuda", cuda)
    clock = torch_adapter.CudaEventClock()
    assert clock.cycles_per_s == pytest.approx(2e9)  # calibrated on the spin kernel itself
    cuda.log.clear()
    calls: list[tuple[int, bool]] = []

    def run(k: int, sync_each: bool) -> None:
        calls.append((k, sync_each))
        if not sync_each:
            cuda.now_s += k * 10e-6  # the GPU's own time: 10 us a call

    latency, device = clock.measure(run, 4)
    assert calls == [(4, True), (4, False)]
    kinds = [k for k, _ in cuda.log]
    assert kinds == ["sync", "sleep", "record", "record"]  # held before the start event
    held_s = cuda.log[1][1] / cuda.cycles_per_s
    assert held_s >= 2 * latency * 4  # twice the host's time for the k calls
    assert device == pytest.approx(10e-6)


def test_jax_device_time_is_k_pipelined_calls_and_one_wait():
    jax_adapter = pytest.importorskip("bench.frameworks.jax_adapter")
    calls: list[tuple[int, bool]] = []
    latency, device = jax_adapter.PipelinedClock().measure(lambda k, s: calls.append((k, s)), 5)
    assert calls == [(5, True), (4, False), (1, True)]
    assert latency >= 0 and device >= 0
    assert jax_adapter.make().clock("cpu") is None  # on a CPU the host clock is the device's


def test_the_gpu_summary_of_the_h200_run():
    proc = subprocess.run(
        [sys.executable, "tools/gpu_summary.py", str(H200)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "timed rows stopped:" in out and "converged" in out
    assert "16x320x64x64 float32 NCHW forward" in out and "geometric mean speedup" in out
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gpu_summary
    finally:
        sys.path.remove(str(ROOT / "tools"))
    from bench.results import read_envs, read_rows

    s = gpu_summary.summarize(read_rows(H200), read_envs(H200), "triton_fused")
    fwd = next(e for e in s["own_target"] if e["case"] == "16x320x64x64 float32 NCHW forward")
    assert 0.85 <= fwd["sol_fraction"] < 1.1 and fwd["meets_bar"]
    assert all(e["bar"] is None or e["meets_bar"] == (e["sol_fraction"] >= e["bar"]) for e in s["own_target"])
    assert set(s["own_below_bar"]) == {e["case"] for e in s["own_target"] if e["meets_bar"] is False}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "soon"], "gpu-run: bad --budget 'soon'; expected whole seconds"),
        (["--fast"], "gpu-run: unknown option '--fast'"),
    ],
)
def test_gpu_run_refuses_bad_options_in_one_line(args, message, tmp_path):
    proc = subprocess.run(
        ["bash", "tools/gpu-run.sh", *args, "--dest", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (tmp_path / "out").exists()
