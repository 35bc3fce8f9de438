"""The worker client's supervision, in-process: a scripted fake worker and a fake clock, no framework.

Each test scripts what worker processes say (events, then an exit), and checks the rows, the blame
and the restarts the client makes of it, as pyperf tests its runner.
"""

from __future__ import annotations

import pytest

from bench.cases import Case
from bench.registry import Declaration, Impl, Source
from bench.timing import TimingSettings
from bench.workers import (
    Begin,
    Collector,
    CopyResult,
    Done,
    Hello,
    Job,
    Limits,
    Probed,
    RowEvent,
    Unloaded,
    WorkerClient,
    WorkerSpec,
    decode,
    encode,
    group_jobs,
)

A, B = Case(shape=(2, 3, 4, 4)), Case(shape=(2, 3, 8, 8))
SRC_X = Source("file", "/x/torch_x.py", (Declaration("x", "torch"), Declaration("y", "torch")))
SRC_Z = Source("file", "/x/torch_z.py", (Declaration("z", "torch"),))


def impl(name, source=SRC_X):
    return Impl(name, "torch", ("NCHW",), "population/eps@sqrt", ("eager",), source=source.label())


IMPLS = {"x": impl("x"), "y": impl("y"), "z": impl("z", SRC_Z)}


def ok_row(name, case):
    key = case.key()
    return RowEvent(
        {"impl": name, "framework": "torch", "backend": "eager", "device": key.device, "dtype": key.dtype,
         "layout": key.layout, "mode": key.mode, "shape": list(key.shape), "input_kind": key.input_kind,
         "status": "ok", "correct": True, "time_median_s": 1e-3}
    )  # fmt: skip


def measured(name, case):
    return [Begin("build", name, case.key()), Begin("sample", name, case.key()), ok_row(name, case)]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeWorker:
    """Plays one script: a list of events (or "wait S" to let the fake clock run), then an exit."""

    def __init__(self, script, exit_description, clock, rss=0):
        self.script = list(script)
        self.exit = exit_description
        self.clock = clock
        self.rss = rss
        self.pid = 4242
        self.killed = False

    def events(self, timeout_s):
        got = []
        while self.script:
            item = self.script.pop(0)
            if isinstance(item, str) and item.startswith("wait"):
                if got:  # what came before the wait arrives first, at the old time
                    self.script.insert(0, item)
                    return got, False
                self.clock.now += float(item.split()[1])
                return got, False
            if item == "hog":
                self.rss = 10 << 30
                return got, False
            got.append(item)
        return got, self.exit is not None

    def sent_at(self, event):
        return None  # unknown: the wall time is the parent's reading

    def rss_bytes(self):
        return self.rss

    def cpu(self):
        return None  # unknown: the claimed time is held against the wall time alone

    def kill(self):
        self.killed = True

    def killed_by_stop_signal(self):
        return any(
            f"killed by {name} " in self.exit_description()
            for name in ("SIGINT", "SIGTERM", "SIGKILL", "SIGUSR2")
        )

    def exit_description(self):
        return self.exit or "worker killed by SIGKILL (signal 9)"

    def log_tail(self):
        return "Traceback ... SystemError: boom" if self.exit and "code 1" in self.exit else ""


class Scripts:
    """The spawn function: hands out one script per started worker and records each spec."""

    def __init__(self, clock, *scripts):
        self.clock = clock
        self.scripts = list(scripts)
        self.specs = []
        self.workers = []

    def __call__(self, spec, log):
        self.specs.append(spec)
        script, exit_description = self.scripts.pop(0)
        worker = FakeWorker(script, exit_description, self.clock)
        self.workers.append(worker)
        return worker


def client(
    spawn,
    clock,
    jobs,
    limits=None,
    task="run",
    sources=(SRC_X, SRC_Z),
):
    spec = WorkerSpec(
        task=task, framework="torch", backend=None, jobs=jobs, sources=sources, settings=TimingSettings()
    )
    listener = Collector()
    limits = limits or Limits(case_timeout_s=30, import_timeout_s=20)
    return WorkerClient(spec, IMPLS, listener, limits, spawn=spawn, clock=clock, poll_s=0), listener


JOBS = group_jobs([(A, "x"), (A, "y"), (B, "x"), (B, "y")])


def statuses(listener):
    return [(r.impl, r.shape, r.status) for r in listener.rows]


def test_a_clean_run_gives_every_row_from_one_worker():
    clock = Clock()
    script = [Hello(1, {"torch": "2"}, "cpu"), *measured("x", A), *measured("y", A), *measured("x", B),
              *measured("y", B), Done(1.0, 1.0)]  # fmt: skip
    spawn = Scripts(clock, (script, "worker exited with code 0"))
    c, out = client(spawn, clock, JOBS)
    c.run()
    assert statuses(out) == [
        ("x", A.shape, "ok"),
        ("y", A.shape, "ok"),
        ("x", B.shape, "ok"),
        ("y", B.shape, "ok"),
    ]
    assert len(spawn.specs) == 1 and out.versions == {"torch": "2"} and spawn.workers[0].killed


def test_a_crash_is_blamed_on_the_phase_and_a_new_worker_takes_the_rest():
    clock = Clock()
    first = [*measured("x", A), Begin("first_call", "y", A.key())]
    second = [*measured("x", B), *measured("y", B)]
    spawn = Scripts(
        clock, (first, "worker killed by SIGSEGV (signal 11)"), (second, "worker exited with code 0")
    )
    c, out = client(spawn, clock, JOBS)
    c.run()
    by = {(r.impl, r.shape): r for r in out.rows}
    assert by[("y", A.shape)].status == "crashed"
    assert by[("y", A.shape)].message == "worker killed by SIGSEGV (signal 11) during first_call of y"
    assert [j.case for j in spawn.specs[1].jobs] == [B] and spawn.specs[1].jobs[0].impls == ("x", "y")
    assert [r.status for r in out.rows].count("ok") == 3


def test_no_progress_for_the_case_timeout_is_a_timeout_of_that_phase():
    clock = Clock()
    first = [*measured("x", A), Begin("sample", "y", A.key()), "wait 31", "wait 1"]
    second = [*measured("x", B), *measured("y", B)]
    spawn = Scripts(clock, (first, None), (second, "worker exited with code 0"))
    c, out = client(spawn, clock, JOBS)
    c.run()
    row = next(r for r in out.rows if r.impl == "y" and r.shape == A.shape)
    assert row.status == "timeout"
    assert row.message == "no progress for 30 s (--case-timeout) during sample of y; worker killed"
    assert spawn.workers[0].killed and len(out.rows) == 4


def test_resident_memory_over_the_limit_is_oom():
    clock = Clock()
    first = [Begin("first_call", "x", A.key()), "hog"]
    second = [*measured("y", A), *measured("x", B), *measured("y", B)]
    spawn = Scripts(clock, (first, None), (second, "worker exited with code 0"))
    c, out = client(spawn, clock, JOBS, Limits(max_memory_bytes=3 << 30))
    c.run()
    row = out.rows[0]
    assert (row.impl, row.status) == ("x", "oom")
    assert "exceeded --max-memory 3.00 GiB during first_call of x" in row.message


def test_a_case_whose_inputs_kill_the_worker_fails_alone():
    """The impossible shape: every implementation of that case gets the row, the next case runs."""
    clock = Clock()
    first = [Begin("inputs", case=A.key())]
    second = [*measured("x", B), *measured("y", B)]
    spawn = Scripts(
        clock, (first, "worker killed by SIGKILL (signal 9)"), (second, "worker exited with code 0")
    )
    c, out = client(spawn, clock, JOBS)
    c.run()
    assert statuses(out) == [
        ("x", A.shape, "crashed"),
        ("y", A.shape, "crashed"),
        ("x", B.shape, "ok"),
        ("y", B.shape, "ok"),
    ]
    assert "while creating the inputs of 2x3x4x4 float32 NCHW forward" in out.rows[0].message


def test_a_source_that_kills_the_worker_at_import_takes_only_its_own_implementations():
    clock = Clock()
    jobs = group_jobs([(A, "x"), (A, "z")])
    first = [Begin("import", source=SRC_X.label()), Begin("import", source=SRC_Z.label())]
    second = [Begin("import", source=SRC_X.label()), *measured("x", A)]
    spawn = Scripts(clock, (first, "worker exited with code 1"), (second, "worker exited with code 0"))
    c, out = client(spawn, clock, jobs)
    c.run()
    by = {r.impl: r for r in out.rows}
    assert by["x"].status == "ok"
    assert by["z"].status == "error" and by["z"].message.startswith(
        "importing it killed the worker: worker exited with code 1"
    )
    assert spawn.specs[1].sources == (SRC_X,)


def test_a_hang_at_import_is_bounded_by_the_import_timeout():
    clock = Clock()
    first = [Begin("import", source=SRC_Z.label()), "wait 21", "wait 1"]
    spawn = Scripts(clock, (first, None), ([], "worker exited with code 0"))
    c, out = client(spawn, clock, (), task="probe", sources=(SRC_Z,))
    c.run()
    (z,) = out.impls
    assert z.name == "z" and z.unavailable.startswith(
        "importing it hung: no progress for 20 s (--import-timeout)"
    )


def test_the_probe_restarts_for_the_sources_not_yet_reported():
    clock = Clock()
    first = [
        Begin("import", source=SRC_X.label()),
        Probed(SRC_X.label(), [IMPLS["x"].info()]),
        Begin("import", source=SRC_Z.label()),
    ]
    second = [
        Begin("import", source="never"),
    ]
    spawn = Scripts(clock, (first, "worker exited with code 1"), (second, "worker exited with code 0"))
    c, out = client(spawn, clock, (), task="probe", sources=(SRC_X, SRC_Z))
    c.run()
    assert [i.name for i in out.impls] == ["x", "z"] and out.impls[1].unavailable
    assert len(spawn.specs) == 1  # nothing left to probe after z's blame


def test_a_worker_that_dies_before_any_phase_fails_everything_once():
    clock = Clock()
    spawn = Scripts(clock, ([], "worker exited with code 1"))
    c, out = client(spawn, clock, JOBS)
    c.run()
    assert len(spawn.specs) == 1 and {r.status for r in out.rows} == {"crashed"} and len(out.rows) == 4
    assert out.rows[0].message == "worker exited with code 1 during start-up: Traceback ... SystemError: boom"


def test_a_clean_exit_that_skipped_jobs_gives_error_rows_and_no_restart():
    clock = Clock()
    spawn = Scripts(
        clock,
        (
            [Hello(1, {}, "cpu"), Unloaded(SRC_X.label(), "NameError: boom"), *measured("x", A)],
            "worker exited with code 0",
        ),
    )
    c, out = client(spawn, clock, group_jobs([(A, "x"), (A, "y")]))
    c.run()
    assert len(spawn.specs) == 1
    by = {r.impl: r for r in out.rows}
    assert by["x"].status == "ok" and by["y"].status == "error"
    assert by["y"].message == "failed to import in the worker: NameError: boom"


def test_a_stop_request_kills_the_worker_and_writes_nothing_more():
    clock = Clock()
    spawn = Scripts(clock, ([*measured("x", A), "wait 1", *measured("y", A)], None))
    stop = {"now": False}
    listener = Collector()

    class Stopping(Collector):
        def row(self, spec, row):
            listener.rows.append(row)
            stop["now"] = True

    spec = WorkerSpec(task="run", framework="torch", backend=None, jobs=JOBS, sources=(SRC_X,))
    WorkerClient(
        spec, IMPLS, Stopping(), spawn=spawn, clock=clock, should_stop=lambda: stop["now"], poll_s=0
    ).run()
    assert [r.impl for r in listener.rows] == ["x"] and spawn.workers[0].killed


def test_a_stop_still_takes_what_the_worker_wrote_before_it():
    # The worker began y's build and then the stop came (an implementation that signals its own
    # run does just that): the Begin is in the pipe, unread, when the client sees the stop. Its
    # `stopped` row, and the count that gives up after three stops, need the phase it names.
    clock = Clock()
    spawn = Scripts(clock, ([*measured("x", A), "wait 1", Begin("build", "y", A.key()), "wait 5",
                             *measured("y", A)], None))  # fmt: skip
    begun = []

    class Watching(Collector):
        def begin(self, spec, event):
            begun.append((event.phase, event.impl))

    spec = WorkerSpec(task="run", framework="torch", backend=None, jobs=JOBS, sources=(SRC_X,))
    listener = Watching()
    WorkerClient(
        spec, IMPLS, listener, spawn=spawn, clock=clock, should_stop=lambda: clock.now >= 1, poll_s=0
    ).run()
    assert begun[-1] == ("build", "y") and spawn.workers[0].killed
    assert [r.impl for r in listener.rows] == ["x"] and clock.now == 1  # nothing waited for after it


def test_an_exception_from_the_listener_still_kills_the_worker():
    clock = Clock()
    spawn = Scripts(clock, ([*measured("x", A)], None))

    class Full(Collector):
        def row(self, spec, row):
            raise OSError("disk full")

    spec = WorkerSpec(task="run", framework="torch", backend=None, jobs=JOBS, sources=(SRC_X,))
    with pytest.raises(OSError):
        WorkerClient(spec, IMPLS, Full(), spawn=spawn, clock=clock, poll_s=0).run()
    assert spawn.workers[0].killed


def test_spec_and_events_round_trip_through_json():
    spec = WorkerSpec(task="check", framework="keras", backend="jax", device="cpu", threads=2,
                      sources=(SRC_X,), jobs=(Job(A, ("x", "y")),), require_correct=True,
                      rotation_bytes=123)  # fmt: skip
    assert WorkerSpec.from_json(spec.to_json()) == spec
    for event in (Hello(1, {"a": "b"}, "cpu"), Begin("sample", "x", A.key()), Begin("import", source="s"),
                  Probed("s", [{"name": "x", "layouts": ["NCHW"]}]),
                  CopyResult("torch", "cpu", 30.0, {"k": 1}),
                  Unloaded("s", "why"), Done(1.5, 2.0), ok_row("x", A)):  # fmt: skip
        assert decode(encode(event).strip()) == event


def test_the_workers_log_is_capped_keeping_its_tail(tmp_path):
    from bench.workers import cap_log

    log = tmp_path / "run.workers.log"
    log.write_bytes(b"old line\n" * 1000 + b"the last words\n")
    assert not cap_log(log, cap_bytes=1 << 20)
    assert cap_log(log, cap_bytes=4096, keep_bytes=64)
    text = log.read_text()
    assert text.startswith("[normbench: log over 0 MiB, earlier output dropped]") and text.endswith(
        "the last words\n"
    )
    assert len(text) < 200


def test_events_carry_the_time_the_worker_sent_them_not_the_time_they_were_read():
    """The parent's witness of a round is the kernel's send stamps: a parent that reads late (here
    half a second after the worker ended) does not make the worker's rounds look longer."""
    import time

    from bench.registry import sources
    from bench.workers import WorkerProcess

    (src,) = [s for s in sources(plugins=False) if s.stem == "numpy_two_pass"]
    proc = WorkerProcess(WorkerSpec(task="probe", framework="numpy", backend=None, sources=(src,)), None)
    try:
        proc.proc.wait(timeout=120)  # it wrote every event and exited before anything was read
        ended_by = time.time()
        time.sleep(0.5)
        events, ended = proc.events(1.0)
        assert ended and [type(e).__name__ for e in events] == ["Begin", "Probed"]
        sent = [proc.sent_at(e) for e in events]
        assert all(s is not None and ended_by - 120 < s <= ended_by for s in sent), (sent, ended_by)
        assert sent == sorted(sent)
    finally:
        proc.kill()


def test_a_row_that_does_not_validate_is_an_error_row_of_its_own_operator_and_parameters():
    """A worker's row that fails validation becomes the error row of the case it came from, whatever
    its operator: once it was keyed as InstanceNorm, so a GroupNorm case's row was dropped and the
    case ended `crashed`, blamed on the worker's exit."""
    g = Case(shape=(2, 4, 4, 4), op="group_norm", op_params="num_groups=2")
    bad = ok_row("x", g)
    bad.row.update(op=g.op, op_params=g.op_params, time_median_s=-1.0)  # a time not above 0
    clock = Clock()
    spawn = Scripts(
        clock, ([Hello(1, {}, "cpu"), Begin("sample", "x", g.key()), bad, Done(1.0, 1.0)], "exited 0")
    )
    c, out = client(spawn, clock, group_jobs([(g, "x")]))
    c.run()
    assert len(spawn.specs) == 1
    (row,) = out.rows
    assert (row.status, row.op, row.op_params) == ("error", "group_norm", "num_groups=2")
    assert row.message.startswith("the worker sent a row that does not validate")
