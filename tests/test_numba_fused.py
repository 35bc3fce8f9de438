"""numba_fused against the float64 reference: layouts, kernel paths, dtypes, edge cases, autograd."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")
torch = pytest.importorskip("torch")

from bench import registry  # noqa: E402
from bench.cases import Case  # noqa: E402
from implementations import numba_fused as nf  # noqa: E402
from tests.instance_norm import (  # noqa: E402
    CANONICAL,
    EDGE_CASES,
    TOLERANCE,
    edge_reference,
    edge_tolerance,
    make_edge_input,
    make_input,
    make_upstream_grad,
    normalize,
    normalize_grad,
)

ROOT = Path(__file__).resolve().parent.parent
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EPS = 1e-5
# C=1 and 1x1 planes (the layouts' strides coincide), C=9 and C=3 (no multiple of a vector),
# 13x11 and 61x33 planes (odd lengths: partial lines at both ends), N=1 (fewer samples than
# threads: the channels_last split path without forcing it). C = 16, 32, 64 divide the 64-element
# blocks of the channels_last register loops (2x64x9x7: seven octets and seven blocks; 1x32x11x5:
# three octets, three blocks and a half-block tail).
SHAPES = [
    (2, 3, 8, 8),
    (1, 9, 5, 6),
    (2, 1, 13, 11),
    (3, 5, 1, 1),
    (1, 3, 61, 33),
    (3, 16, 7, 7),
    (2, 64, 9, 7),
    (1, 32, 11, 5),
]


@pytest.fixture(params=["whole", "split", "stream"])
def path(request, monkeypatch):
    """Which kernel path the small test shapes take: units whole per thread, leftover units split
    across threads (forced with two threads and no size floor), or outputs written by streaming
    stores (no size floor)."""
    if request.param == "split":
        monkeypatch.setattr(nf, "SPLIT_MIN_BYTES", 0)
        previous = numba.get_num_threads()
        nf.set_threads(2)
        yield request.param
        nf.set_threads(previous)
        return
    if request.param == "stream":
        monkeypatch.setattr(nf, "STREAM_MIN_BYTES", 0)
    yield request.param


@pytest.fixture
def poisoned(monkeypatch):
    """Outputs start as NaN, so an element a kernel fails to write shows up."""
    full_like = torch.full_like
    monkeypatch.setattr(torch, "empty_like", lambda t, **kw: full_like(t, float("nan"), **kw))


def to_torch(x64, dtype="float32", layout="NCHW", requires_grad=False):
    t = torch.from_numpy(x64).to(TORCH_DTYPES[dtype])
    if layout == "NHWC":
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


def normwise(out, ref):
    out = out.detach().double().numpy()
    assert np.isfinite(out).all()
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(out - ref)) / scale) if scale > 0 else float(np.max(np.abs(out)))


def run(x, g):
    """Forward and input gradient through autograd; references from the values actually passed
    (rounded to the dtype), so only the kernels' error is measured."""
    y = nf.instance_norm(x, EPS)
    (dx,) = torch.autograd.grad(y, x, g)
    x64, g64 = x.detach().double().numpy(), g.double().numpy()
    return y, dx, normalize(x64, EPS, CANONICAL), normalize_grad(x64, g64, EPS, CANONICAL)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradient_match_reference(shape, layout, path, poisoned):
    case = Case(shape)
    x = to_torch(make_input(case), layout=layout, requires_grad=True)
    g = to_torch(make_upstream_grad(case), layout=layout)
    y, dx, y_ref, dx_ref = run(x, g)
    assert y.stride() == x.stride() and dx.stride() == x.stride(), "memory format not kept"
    if shape[2] * shape[3] == 1:
        assert not y.detach().any() and not dx.any(), "a 1x1 plane normalizes (and differentiates) to 0"
        return
    assert normwise(y, y_ref) < 1e-5
    assert normwise(dx, dx_ref) < 1e-5


@pytest.mark.parametrize("channels", [9, 16, 160])  # 160: channels_last per-row loops (WIDE_ROW)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_half_precision_within_tolerance(dtype, layout, channels, path, poisoned):
    case = Case((2, channels, 13, 11), dtype=dtype)
    x = to_torch(make_input(case), dtype, layout, requires_grad=True)
    g = to_torch(make_upstream_grad(case), dtype, layout)
    y, dx, y_ref, dx_ref = run(x, g)
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    assert y.stride() == x.stride() and dx.stride() == x.stride()
    # float32 maths, one rounding per output element: ~ the format's half ulp, far inside tolerance
    assert normwise(y, y_ref) < TOLERANCE[dtype] / 10
    assert normwise(dx, dx_ref) < TOLERANCE[dtype] / 10


def test_bfloat16_rounds_to_nearest_even_and_keeps_nan():
    from implementations import _numba_kernels as k

    @numba.njit
    def to_bf16(x, out):
        for i in range(x.shape[0]):
            out[i] = k.from_f32(x[i], out)

    # ties to even both ways, the largest finite value, inf, a float32 subnormal, NaN
    values = np.array([1.00390625, 1.01171875, -3.389e38, np.inf, 1e-40, -0.0, np.nan], np.float32)
    out = np.empty(values.shape, np.int16)
    to_bf16(values, out)
    want = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(out[:-1], want[:-1])
    assert torch.from_numpy(out[-1:]).view(torch.bfloat16).isnan().all()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", sorted(EDGE_CASES))
def test_edge_cases_are_safe(kind, layout):
    shape, dtype = EDGE_CASES[kind]
    case = Case(shape, dtype=dtype, layout=layout, input_kind=kind)
    x = to_torch(make_edge_input(kind, case), dtype, layout)
    with torch.no_grad():
        y = nf.instance_norm(x, EPS)
    y64 = y.double().numpy()
    ref = edge_reference(x.double().numpy(), EPS, CANONICAL)
    assert np.isfinite(y64).all()
    assert np.max(np.abs(y64 - ref)) <= edge_tolerance(kind, dtype) / 10


def test_large_offset_keeps_the_spread():
    """1e4 + 0.01 * noise: float32 cannot hold the mean to 5 % of the std; the pivot keeps it exact."""
    x64 = 1e4 + 0.01 * np.random.default_rng(0).standard_normal((2, 4, 64, 64))
    for layout in ("NCHW", "NHWC"):
        x = to_torch(x64, layout=layout)
        y = nf.instance_norm(x, EPS)
        ref = normalize(x.double().numpy(), EPS)
        assert np.max(np.abs(y.double().numpy() - ref)) < 1e-4


def test_pivot_far_from_the_mean_stays_accurate():
    """An outlier first pixel: (K - mean)^2 is as large as it gets (P * var), sums stay float64."""
    x64 = np.random.default_rng(1).standard_normal((1, 2, 64, 64))
    x64[:, :, 0, 0] = 1e6
    for layout in ("NCHW", "NHWC"):
        x = to_torch(x64, layout=layout)
        y = nf.instance_norm(x, EPS)
        assert normwise(y, normalize(x.double().numpy(), EPS)) < 1e-6


@pytest.mark.parametrize("channels", [3, 64, 160])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("sigmas", [2.9, 3.1, 30.0])
def test_pivot_just_inside_and_outside_the_float32_guard(sigmas, layout, channels):
    """The pivot `sigmas` standard deviations from the mean (the first pixel of a plane; the mean of
    the first 8 pixels of a channels_last sample: all 8 set): float32 partial sums just inside the
    guard (3 sigma), exact float64 sums beyond it; both accurate."""
    rng = np.random.default_rng(2)
    x64 = rng.standard_normal((2, channels, 48, 40))
    x64 -= x64.mean(axis=(2, 3), keepdims=True)
    x64 /= x64.std(axis=(2, 3), keepdims=True)
    x64[:, :, 0, :8] = sigmas
    x64 = 5.0 + 0.25 * x64
    x = to_torch(x64, layout=layout)
    assert normwise(nf.instance_norm(x, EPS), normalize(x.double().numpy(), EPS)) < 2e-6


@pytest.mark.parametrize("channels", [3, 64, 160])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_upstream_gradient_with_a_large_mean(layout, channels, path):
    """g = 3 + 1e-4 * noise: dx depends only on the noise; float32 rounding of mean(g) alone
    would be 3e-7 against dx's 1e-4 scale. Shifting g by its first value keeps it exact."""
    case = Case((2, channels, 24, 20))
    x = to_torch(make_input(case), layout=layout, requires_grad=True)
    g64 = 3.0 + 1e-4 * make_upstream_grad(case)
    g = to_torch(g64, layout=layout)
    _, dx, _, dx_ref = run(x, g)
    assert normwise(dx, dx_ref) < 1e-4


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_train_step_and_upstream_gradients_in_other_layouts(layout):
    """backward gets what autograd hands it: here an NCHW gradient for a channels_last y, and the
    expanded (stride 0) ones of y.sum(); both are made indexable in x's layout."""
    case = Case((2, 5, 9, 7))
    x = to_torch(make_input(case), layout=layout, requires_grad=True)
    w64 = make_upstream_grad(case)
    (nf.instance_norm(x, EPS) * torch.from_numpy(w64).float()).sum().backward()
    x64 = x.detach().double().numpy()
    assert normwise(x.grad, normalize_grad(x64, w64, EPS)) < 1e-5
    x.grad = None
    nf.instance_norm(x, EPS).sum().backward()
    assert float(x.grad.abs().max()) < 1e-5  # sum(xhat) does not depend on x


def test_module_matches_instance_norm_and_needs_no_grad():
    x = torch.randn(3, 4, 10, 12) * 3 + 1
    module = nf.NumbaInstanceNorm2d(eps=1e-3)
    assert "eps=0.001" in repr(module)
    y = module(x)
    assert not y.requires_grad
    torch.testing.assert_close(y, torch.nn.functional.instance_norm(x, eps=1e-3), atol=1e-5, rtol=1e-5)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    yc = module(xc)
    assert yc.is_contiguous(memory_format=torch.channels_last) and yc.requires_grad
    torch.testing.assert_close(yc, y, atol=1e-5, rtol=1e-5)


def test_layouts_are_read_in_place_and_other_strides_are_copied_once():
    x = torch.randn(2, 3, 4, 5)
    planes, rows = nf._indexable(x)
    assert planes.data_ptr() == x.data_ptr() and not rows
    xc = x.contiguous(memory_format=torch.channels_last)
    samples, rows = nf._indexable(xc)
    assert samples.data_ptr() == xc.data_ptr() and rows
    odd = torch.randn(2, 3, 5, 4).transpose(2, 3)  # neither layout
    y = nf.instance_norm(odd, EPS)
    torch.testing.assert_close(y, torch.nn.functional.instance_norm(odd, eps=EPS), atol=1e-5, rtol=1e-5)


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="N,C,H,W"):
        nf.instance_norm(torch.randn(3, 4, 5), EPS)
    with pytest.raises(TypeError, match="float64"):
        nf.instance_norm(torch.randn(1, 2, 3, 4, dtype=torch.float64), EPS)
    empty = nf.instance_norm(torch.randn(0, 2, 3, 4), EPS)
    assert empty.shape == (0, 2, 3, 4)


def test_registration_and_thread_parity():
    impl = registry.get("numba_fused")
    assert impl.framework == "torch" and impl.semantics == CANONICAL
    assert set(impl.layouts) == {"NCHW", "NHWC"} and set(impl.modes) == {"forward", "backward", "train"}
    assert set(impl.dtypes) == {"float32", "float16", "bfloat16"} and impl.devices == ("cpu",)
    before_torch, before_numba = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(1)
        fn = impl.builder(Case((1, 2, 3, 4)))
        assert numba.get_num_threads() == 1
        x = torch.randn(1, 2, 3, 4)
        torch.testing.assert_close(fn(x), torch.nn.functional.instance_norm(x, eps=EPS))
    finally:
        torch.set_num_threads(before_torch)
        numba.set_num_threads(before_numba)


def test_cli_check_passes_with_every_edge_case_safe():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "check", "numba_fused", "--dtype", "float32", "--dtype", "float16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    edge_lines = [line for line in proc.stdout.splitlines() if any(k in line for k in EDGE_CASES)]
    assert len(edge_lines) == 2 * len(EDGE_CASES) and all(" safe," in line for line in edge_lines), (
        proc.stdout
    )


def test_double_backward_is_refused():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    y = nf.instance_norm(x, EPS)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad((y * y).sum(), x, create_graph=True)


@pytest.mark.parametrize("channels", [3, 64, 160])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gradient_with_outlier_pivots(layout, channels, path):
    """First 8 pixels of x and of g far out in their tails (the pivots: a plane's first pixel, the
    mean of a channels_last sample's first 8): the float32 partial sums' guard sends the sums to
    float64."""
    case = Case((2, channels, 24, 20))
    x64, g64 = make_input(case), make_upstream_grad(case)
    x64[:, :, 0, :8] += 50.0
    g64[:, :, 0, :8] = 1e3
    x = to_torch(x64, layout=layout, requires_grad=True)
    _, dx, _, dx_ref = run(x, to_torch(g64, layout=layout))
    assert normwise(dx, dx_ref) < 1e-5


def test_functional_forward_and_backward_match_autograd():
    x = torch.randn(2, 3, 9, 10, requires_grad=True)
    g = torch.randn(2, 3, 9, 10)
    y, mean, rstd = nf.forward(x, EPS)
    assert mean.shape == rstd.shape == (2, 3) and mean.dtype == torch.float64
    (want,) = torch.autograd.grad(nf.instance_norm(x, EPS), x, g)
    torch.testing.assert_close(nf.backward(x, g, mean, rstd, EPS), want)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_group_norm_matches_the_float64_reference_in_every_kernel_path(groups, layout, path, poisoned):
    """NCHW GroupNorm(G) runs the InstanceNorm kernels over groups of C/G planes (one span each);
    channels_last merges each group's channel sums. Channels get their own offsets and scales, so
    a group's channels differ (the merge is exercised, not a constant). The reference is float64:
    F.group_norm on channels_last is itself off by ~1e-4 here."""
    from bench import operators

    scale = torch.linspace(0.2, 3.0, 8).reshape(1, 8, 1, 1)
    offset = torch.linspace(-2.0, 5.0, 8).reshape(1, 8, 1, 1)
    x = torch.randn(3, 8, 5, 7) * scale + offset
    g = torch.randn(3, 8, 5, 7) + 1.0
    if layout == "NHWC":
        x, g = (
            x.contiguous(memory_format=torch.channels_last),
            g.contiguous(memory_format=torch.channels_last),
        )
    x.requires_grad_(True)
    y = nf.group_norm(x, groups, EPS)
    (dx,) = torch.autograd.grad(y, x, g)
    op = operators.get("group_norm")
    case = Case(shape=(3, 8, 5, 7), eps=EPS, op="group_norm", op_params=f"num_groups={groups}")
    ref = op.reference(x.detach().double().numpy(), case, g.double().numpy())
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "NHWC")
    assert normwise(y, ref.output(op.canonical)) < 2e-6
    assert normwise(dx, ref.grad(op.canonical)) < 2e-6


def test_group_norm_refuses_groups_that_do_not_divide_the_channels():
    with pytest.raises(ValueError, match="num_groups 3 does not divide the 8 channels"):
        nf.group_norm(torch.randn(2, 8, 4, 4), 3, EPS)
    nhwc = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nf.group_norm(nhwc, 8, EPS), torch.nn.functional.instance_norm(nhwc, eps=EPS))


@pytest.mark.parametrize("far", [False, True])
@pytest.mark.parametrize("channels", [96, 640, 1280])
def test_channels_last_group_norm_with_blocks_longer_than_the_registers(channels, far, path):
    """C not dividing 64: the tiled sums a row at a time (96 channels: 384-byte rows), or the
    per-row loops of rows of WIDE_ROW channels or more (640; 1,280: the gradient emitted in blocks
    of channels), forward and gradient in float32 octets; with the first 8 pixels of x and g far
    out (the pivots), the guard sends them to float64. Against float64."""
    from bench import operators

    rng = np.random.default_rng(7)
    shape = (2, channels, 6, 8)
    x64 = rng.standard_normal(shape) * np.linspace(0.2, 3.0, channels).reshape(1, -1, 1, 1) + 1.5
    g64 = rng.standard_normal(shape) + 1.0
    if far:
        x64[:, :, 0, :8] += 50.0
        g64[:, :, 0, :8] = 1e3
    x = to_torch(x64, layout="NHWC", requires_grad=True)
    y = nf.group_norm(x, 32, EPS)
    (dx,) = torch.autograd.grad(y, x, to_torch(g64, layout="NHWC"))
    op = operators.get("group_norm")
    case = Case(shape=shape, eps=EPS, op="group_norm", op_params="num_groups=32")
    ref = op.reference(x.detach().double().numpy(), case, to_torch(g64).double().numpy())
    assert normwise(y, ref.output(op.canonical)) < 2e-6
    assert normwise(dx, ref.grad(op.canonical)) < 1e-5


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize(
    ("shape", "groups", "far"), [((2, 320, 5, 7), 32, False), ((3, 512, 3, 3), 512, True)]
)
def test_wide_sums_plans_agree_bit_for_bit(shape, groups, far, dtype):
    """The per-row loops' two sums plans (octets with prefetch, a row at a time) add the same
    values in the same order: outputs, statistics and gradients are equal bit for bit, so the
    plan a machine's timings pick changes no result. 35 and 9 pixels: a partial octet at the end;
    with the first pixels far out, the float32 guard sends the sums to float64 in both."""
    from implementations import _numba_kernels as kernels

    rng = np.random.default_rng(3)
    x64 = rng.standard_normal(shape) * 2.0 + 3.0
    g64 = rng.standard_normal(shape)
    if far:
        x64[:, :, 0, :2] += 80.0
        g64[:, :, 0, :2] = 500.0
    x, g = to_torch(x64, dtype, "NHWC"), to_torch(g64, dtype, "NHWC")
    n, c, h, w = shape
    like = nf._ELEMENT[x.dtype][0]
    results = []
    for plan in (kernels.SUMS_OCTETS, kernels.SUMS_ROWS):
        y, dx, stats = torch.empty_like(x), torch.empty_like(x), np.zeros((3, n, c))
        kernels.forward_wide(x.data_ptr(), y.data_ptr(), n, h * w, c, c // groups, stats, EPS, 2, plan, like)
        kernels.backward_wide(
            x.data_ptr(), g.data_ptr(), dx.data_ptr(), n, h * w, c, c // groups, stats, EPS, 2, plan, like
        )
        results.append((y, dx, stats))
    (y0, dx0, s0), (y1, dx1, s1) = results
    assert torch.isfinite(y0.float()).all() and torch.isfinite(dx0.float()).all()
    assert torch.equal(y0, y1) and torch.equal(dx0, dx1)
    np.testing.assert_array_equal(s0, s1)


class FakeClock:
    """A host on which each plan's call takes the next of its listed durations (seconds)."""

    def __init__(self, durations):
        self.durations = {plan: list(d) for plan, d in durations.items()}
        self.now = 0.0
        self.reads = 0
        self.ran = []

    def __call__(self):
        self.reads += 1
        return self.now

    def launch(self, plan):
        self.ran.append(plan)
        self.now += self.durations[plan].pop(0)


def test_plan_chooser_keeps_the_plan_with_the_lower_median():
    """`warmup` untimed first calls (slow: compilation, first touch), then the plans in turn until
    each has `trials` timings; the lower median wins (plan 1's one slow call does not lose it the
    race), and later calls run it without reading the clock. Another key chooses on its own
    timings."""
    clock = FakeClock({0: [9.0, 7.0, 2.0, 2.1, 2.2, 2.0], 1: [1.0, 5.0, 1.1, 1.0, 1.0, 1.0]})
    chooser = nf.PlanChooser((0, 1), trials=3, warmup=2, clock=clock)
    for _ in range(8):
        chooser.call(("forward", 320), clock.launch)
    assert clock.ran == [0, 0, 0, 1, 0, 1, 0, 1]
    assert chooser.chosen == {("forward", 320): 1}
    reads = clock.reads
    assert [chooser.call(("forward", 320), clock.launch) for _ in range(2)] == [1, 1]
    assert clock.reads == reads

    slow_rows = FakeClock({0: [1.0] * 5, 1: [3.0] * 3})
    other = nf.PlanChooser((0, 1), trials=3, clock=slow_rows)
    for _ in range(8):
        other.call(("backward", 640), slow_rows.launch)
    assert other.chosen == {("backward", 640): 0}
    assert slow_rows.ran[-1] == 0


def test_group_norm_on_wide_rows_settles_on_a_plan_and_never_changes_its_output():
    """nf.group_norm on rows of 320 channels: the first calls try both plans, then one is kept
    for the shape; every call's output and gradient are the same bit for bit."""
    x = (torch.randn(2, 320, 4, 6) * 3 + 1).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    g = torch.randn(2, 320, 4, 6).contiguous(memory_format=torch.channels_last)
    outputs = []
    for _ in range(nf.PLAN_WARMUP + 2 * nf.PLAN_TRIALS + 1):
        y = nf.group_norm(x, 32, EPS)
        (dx,) = torch.autograd.grad(y, x, g)
        outputs.append((y.detach(), dx))
    chosen = {key[0] for key in nf._wide_plans.chosen if key[2:4] == (24, 320)}
    assert chosen == {"forward", "backward"}
    for y, dx in outputs[1:]:
        assert torch.equal(y, outputs[0][0]) and torch.equal(dx, outputs[0][1])


@pytest.mark.parametrize("channels", [160, 320])
def test_gradient_pivots_30_sigmas_out_take_the_float64_sums(channels):
    """Channels_last rows of WIDE_ROW channels or more, x's and g's pivots (their first 8 pixels)
    30 standard deviations out: the gradient's float32 partial sums would leave ~1e-5 of error
    (measured with the guard disabled: 9e-6 to 1e-5); the guard sends them to float64 (6e-7)."""
    rng = np.random.default_rng(2)
    shape = (2, channels, 48, 40)
    x64, g64 = rng.standard_normal(shape), rng.standard_normal(shape)
    for a in (x64, g64):
        a -= a.mean(axis=(2, 3), keepdims=True)
        a /= a.std(axis=(2, 3), keepdims=True)
        a[:, :, 0, :8] = 30.0
    x = to_torch(5.0 + 0.25 * x64, layout="NHWC", requires_grad=True)
    g = to_torch(3.0 + 0.01 * g64, layout="NHWC")
    _, dx, _, dx_ref = run(x, g)
    assert normwise(dx, dx_ref) < 2e-6
