"""The cache sweep is a property of the machine: a run reuses the same machine's sweep of the last
day and checks again, itself, that its rotation is cold; a sweep store someone broke or wrote by
hand means "sweep again", never a failed run."""

import datetime as dt
import json

import pytest

from bench.analysis import load, run_info
from bench.environment import SweepStore
from bench.memory import Copier, probe_cache
from bench.results import read_env
from tests.conftest import run_rows

SWEEP = [(8 << 20, 100.0), (32 << 20, 100.0), (128 << 20, 100.0), (512 << 20, 20.0), (2 << 30, 20.0)]


def counting_copy(calls, cache_bytes=128 << 20, dram_gbps=25.0, passes=None):
    def copy(footprint, pass_bytes):
        calls.append(footprint)
        if passes is not None:
            passes.append(pass_bytes)
        return 100.0 if footprint <= cache_bytes else dram_gbps

    return copy


def test_a_known_sweep_is_not_measured_again_but_the_cold_check_and_the_bandwidth_are():
    calls, passes = [], []
    known = (SWEEP, "2026-12-01T10:00:00+00:00")
    probe = probe_cache(counting_copy(calls, passes=passes), 32 << 20, 2 << 30, 2 << 30, known=known)
    assert probe.sweep_reused and probe.swept_at == "2026-12-01T10:00:00+00:00"
    assert probe.effective_cache_bytes == 512 << 20 and probe.rotation_bytes == 1 << 30
    assert calls == [1 << 30, 2 << 30] * 3  # the cold check only, in turns
    # The plateau copies are timed in passes as long as the cold copy's whole ones.
    assert passes == [None, 1 << 30] * 3
    assert probe.cold_verified and probe.dram_gbps == 25.0  # this run's plateau, not the stored 20
    passes.clear()
    probe_cache(counting_copy([], passes=passes), 32 << 20, 2 << 30, 2 << 30, known=known, whole_plateau=True)
    assert passes == [None, None] * 3  # a GPU's: whole passes


def test_one_set_of_pieces_serves_every_footprint_it_divides():
    """The copy worker allocates the largest footprint's pieces once; the sweep and the cold check
    copy the first pieces of that set (or rotate through all of it in shorter passes). A footprint
    the pieces do not divide gets pieces of its own: the footprint measured is the one asked for."""
    allocations, copies = [], []

    def allocate(piece_bytes, count):
        allocations.append((piece_bytes, count))
        which = len(allocations) - 1
        return lambda indices: copies.append((which, list(indices)))

    copier = Copier(allocate, 1 << 30)
    assert allocations == [(16 << 20, 32)]  # 32 pieces of 16 MiB source + 16 MiB destination
    assert copier.gbps(128 << 20) > 0
    assert {(w, tuple(i)) for w, i in copies} == {(0, (0, 1, 2, 3))}  # whole passes, first 4 pieces
    copies.clear()
    copier.gbps(1 << 30, 256 << 20)
    assert [i[0] for _, i in copies[:6]] == [0, 8, 16, 24, 0, 8] and {len(i) for _, i in copies} == {8}
    copier.gbps(8 << 20)
    copier.gbps(48 << 20)
    assert allocations[1:] == [(4 << 20, 1), (24 << 20, 1)]


def test_a_known_sweep_that_this_runs_cold_check_refutes_is_measured_again():
    """A sweep stored while the machine was in another state (a neighbour saturating memory: the
    whole curve at 4 GB/s) puts the rotation inside the cache this run sees: swept again."""
    calls = []
    stale = [(8 << 20, 170.0), (32 << 20, 4.2), (128 << 20, 4.2), (512 << 20, 4.2), (2 << 30, 4.2)]
    probe = probe_cache(counting_copy(calls), 32 << 20, 2 << 30, 2 << 30, known=(stale, "then"))
    assert not probe.sweep_reused and probe.swept_at != "then"
    assert probe.effective_cache_bytes == 512 << 20 and probe.dram_gbps == 25.0 and probe.cold_verified
    assert calls[:6] == [64 << 20, 2 << 30] * 3 and len(calls) == 6 + 3 * 5 + 6


def test_a_known_sweep_over_other_footprints_is_measured_again():
    calls = []
    probe = probe_cache(counting_copy(calls), 32 << 20, 1 << 30, 1 << 30, known=(SWEEP, "then"))
    assert not probe.sweep_reused
    assert [b for b, _ in probe.sweep] == [8 << 20, 32 << 20, 128 << 20, 512 << 20, 1 << 30]
    assert probe.swept_at.endswith("+00:00")


def test_the_store_keeps_a_day_of_one_machine(tmp_path):
    store = SweepStore(tmp_path / "sweeps.json")
    key = store.key(device="cpu", threads=2)
    now = dt.datetime.now(dt.timezone.utc)
    store.save(key, SWEEP, now.isoformat())
    assert store.load(key) == (SWEEP, now.isoformat())
    assert store.load(store.key(device="cpu", threads=1)) is None  # another thread count: another sweep
    store.save(key, SWEEP, (now - dt.timedelta(days=2)).isoformat())
    assert store.load(key) is None


def test_a_broken_or_foreign_store_means_sweep_again(tmp_path):
    path = tmp_path / "sweeps.json"
    store = SweepStore(path)
    key = store.key(device="cpu")
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    broken = (
        "{not json",
        "[1, 2]",
        json.dumps({key: "x"}),
        json.dumps({key: {"sweep": [[1, "fast"]], "swept_at": "now"}}),
        json.dumps({key: {"sweep": [[8, float("inf")]], "swept_at": now}}),
        json.dumps({key: {"sweep": [], "swept_at": now}}),
        json.dumps({key: {"sweep": [[8, 1.0]], "swept_at": "yesterday"}}),
        json.dumps({key: {"sweep": [[float("inf"), 1.0]], "swept_at": now}}),  # json writes Infinity
    )
    for text in broken:
        path.write_text(text)
        assert store.load(key) is None, text
    store.save(key, SWEEP, dt.datetime.now(dt.timezone.utc).isoformat())  # a broken file is replaced
    assert store.load(key) is not None
    (tmp_path / "ro").mkdir(mode=0o500)
    SweepStore(tmp_path / "ro" / "sub" / "sweeps.json").save(key, SWEEP, "now")  # unwritable: no error
    (tmp_path / "a_file").write_text("")
    in_a_file = SweepStore(tmp_path / "a_file" / "sweeps.json")  # $NORMBENCH_CACHE_DIR names a file
    in_a_file.save(key, SWEEP, "now")
    assert in_a_file.load(key) is None


# It depends on this run's own cold check, which a neighbour's memory traffic can refute (three
# runs in a row did, once, beside the faults tests): it times the machine, so it runs alone.
@pytest.mark.serial
def test_the_second_run_reuses_the_sweep(tmp_path, monkeypatch):
    """Each step may take up to three runs: a run whose own cold check fails (a neighbour's memory
    traffic) keeps no sweep, and does not reuse one. (`--reprobe` reaching the copy worker is
    tested in-process in test_runner.py.)"""
    monkeypatch.setenv("NORMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "cache" / "cache-sweeps.json"
    args = ("--impl", "numpy_two_pass", "--shape", "1,2,4,4", "--device", "cpu", "--max-time", "0.01")
    runs = iter(range(100))

    def cache_of():
        out = tmp_path / str(next(runs))
        out.mkdir()
        proc, rows = run_rows(out, *args, host_cache=True)  # the sweep of this machine is the subject
        assert proc.returncode == 0 and rows, proc.stderr[-2000:]
        return read_env(out / "run.jsonl")["cache"]["cpu"], out / "run.jsonl"

    for _attempt in range(3):
        first, _ = cache_of()
        assert not first["sweep_reused"]
        if store.exists():
            break
        assert not first["cold_verified"]
    stored = json.loads(store.read_text())
    (entry,) = stored.values()
    # Recognisable if reused, and with its plateau at the largest footprint: the rotation it
    # implies is then far beyond the cache whatever state the VM's cache is in today (a rotation
    # near it can come out cache-resident in one run and not in the next), so this run's cold
    # check compares two copies from DRAM.
    entry["sweep"] = [
        [b, g * 1000 if i < len(entry["sweep"]) - 1 else g] for i, (b, g) in enumerate(entry["sweep"])
    ]
    for _attempt in range(3):
        store.write_text(json.dumps(stored))  # again: a run whose cold check refuted it swept anew
        second, path = cache_of()
        if second["sweep_reused"]:
            break
    assert second["sweep_reused"] and second["swept_at"] == first["swept_at"]
    assert [g for _, g in second["sweep"]] == pytest.approx([g for _, g in entry["sweep"]], abs=0.01)
    assert second["cold_verified"] and second["dram_gbps"] == second["plateau_check_gbps"] < 1000
    assert second["effective_cache_bytes"] == entry["sweep"][-1][0]  # judged from the stored sweep
    results = load([path])
    note = run_info(results, results.runs[0]).effective_cache_bytes[0][2]
    assert note == f"from this machine's sweep of {first['swept_at']}; the cold check below is this run's"


def test_one_sweep_at_a_time_and_a_stuck_holder_delays_only_so_long(tmp_path):
    """Two runs that start together must not sweep at once (each would measure half the
    bandwidth): the second waits for the first's turn, then finds its sweep stored."""
    import time

    store = SweepStore(tmp_path / "sweeps.json")
    with store.turn() as first:
        assert first
        t0 = time.monotonic()
        with SweepStore(tmp_path / "sweeps.json").turn(wait_s=0.3) as second:
            assert not second and time.monotonic() - t0 >= 0.3  # it measures anyway, after a while
    with store.turn(wait_s=0) as again:
        assert again  # released
    in_a_file = SweepStore(tmp_path / "a_file" / "sweeps.json")
    (tmp_path / "a_file").write_text("not a folder")
    with in_a_file.turn() as got:
        assert not got  # a cache folder it cannot use: no turn, no error
