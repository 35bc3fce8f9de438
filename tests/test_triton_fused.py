"""triton_fused against the float64 reference, in both kernel paths, layouts and dtypes.

In Triton's interpreter on the CPU (`make test`); compiled on a GPU with NORMBENCH_TEST_DEVICE=cuda
(tools/gpu-run.sh runs them so).
"""

import os

DEVICE = os.environ.get("NORMBENCH_TEST_DEVICE", "cpu")
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first triton import; no GPU in CI

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("triton")
torch = pytest.importorskip("torch")
if DEVICE != "cpu" and not torch.cuda.is_available():
    pytest.skip(f"NORMBENCH_TEST_DEVICE={DEVICE} but torch sees no CUDA device", allow_module_level=True)

from bench import registry  # noqa: E402
from bench.cases import Case  # noqa: E402
from implementations import triton_fused as tf  # noqa: E402
from tests.instance_norm import (  # noqa: E402
    CANONICAL,
    TOLERANCE,
    detect_semantics,
    make_input,
    make_upstream_grad,
    normalize,
    normalize_grad,
)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EPS = 1e-5
# Small, odd and degenerate planes: 7x7 and 13x11 leave partial tiles, C=9 a partial channel
# tile on the channels_last path, H=1 / W=1 planes the stride collapsing.
SHAPES = [
    (2, 3, 8, 8),
    (1, 2, 7, 7),
    (2, 2, 16, 16),
    (1, 3, 13, 11),
    (1, 9, 5, 6),
    (2, 1, 1, 17),
    (1, 5, 3, 1),
]


@pytest.fixture(params=["fused", "looped"])
def path(request, monkeypatch):
    """Lowering the fused limit sends every test shape through the looped kernels, in chunks."""
    if request.param == "looped":
        monkeypatch.setattr(tf, "MAX_FUSED_TILE", 16)
        monkeypatch.setattr(tf, "LOOP_TILE", 64)
    return request.param


@pytest.fixture
def poisoned(monkeypatch):
    """Outputs start as NaN, so an element a kernel fails to write shows up."""
    full_like = torch.full_like
    monkeypatch.setattr(torch, "empty_like", lambda t, **kw: full_like(t, float("nan"), **kw))


def to_torch(x64, dtype="float32", layout="NCHW", requires_grad=False):
    t = torch.from_numpy(x64).to(TORCH_DTYPES[dtype])
    if layout == "NHWC":
        t = t.contiguous(memory_format=torch.channels_last)
    return t.to(DEVICE).requires_grad_(requires_grad)


def normwise(out, ref):
    out = out.detach().double().cpu().numpy()
    assert np.isfinite(out).all()
    return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))


def run(x, g):
    """Forward and input gradient through the autograd Function, with references from the
    values actually passed (rounded to the dtype), so only the kernels' error is measured."""
    y = tf.PlaneNorm.apply(x, EPS)
    (dx,) = torch.autograd.grad(y, x, g)
    x64, g64 = x.detach().double().cpu().numpy(), g.double().cpu().numpy()
    return y, dx, normalize(x64, EPS, CANONICAL), normalize_grad(x64, g64, EPS, CANONICAL)


def test_plan_heuristic(monkeypatch):
    small = tf.plan(64, 49, channels_inner=False)
    assert not small.looped and small.block_s == 64 and small.block_c * small.block_s <= tf.MAX_FUSED_TILE
    assert small.block_c > 1  # tiny planes are batched per program
    stem = tf.plan(64, 112 * 112, channels_inner=False)
    assert (stem.looped, stem.block_c, stem.block_s) == (False, 1, 16384)
    big = tf.plan(64, 256 * 256, channels_inner=False)
    assert big.looped and big.block_c * big.block_s == tf.LOOP_TILE
    nhwc = tf.plan(64, 56 * 56, channels_inner=True)
    assert nhwc.block_c >= tf.SECTOR_CHANNELS and nhwc.looped
    for p in (small, stem, big, nhwc):
        assert 1 <= p.num_warps <= tf.MAX_WARPS
        assert all(v & (v - 1) == 0 for v in (p.block_c, p.block_s, p.num_warps))
    monkeypatch.setattr(tf, "MAX_FUSED_TILE", 16)
    assert all(tf.plan(s[1], s[2] * s[3], channels_inner=False).looped for s in SHAPES)
    assert all(tf.plan(s[1], s[2] * s[3], channels_inner=True).looped for s in SHAPES)


@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, dtype, layout, path):
    case = Case(shape=shape, dtype=dtype, layout=layout, mode="train")
    x = to_torch(make_input(case), dtype, layout, requires_grad=True)
    g = to_torch(make_upstream_grad(case), dtype, layout)
    y, dx, ref, gref = run(x, g)
    assert y.dtype == dx.dtype == x.dtype and y.shape == dx.shape == x.shape
    assert normwise(y, ref) < TOLERANCE[dtype]
    assert normwise(dx, gref) < TOLERANCE[dtype]
    if layout == "NHWC":
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert dx.is_contiguous(memory_format=torch.channels_last)
    else:
        assert y.is_contiguous() and dx.is_contiguous()


def test_bfloat16_rounds_to_nearest_even(path):
    """The bf16 output is the fp32 result rounded to nearest even, as compiled Triton and torch do
    (the interpreter alone would truncate, biasing |y| low and skewing semantics detection)."""
    x = to_torch(make_input(Case(shape=(2, 3, 16, 16))), "bfloat16")
    y, _, _ = tf.forward(x, EPS)
    y32, _, _ = tf.forward(x.float(), EPS)
    assert torch.equal(y, y32.bfloat16())


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_indexes_input_in_place(layout):
    x = to_torch(make_input(Case(shape=(2, 4, 6, 5))), layout=layout)
    same, strides = tf._indexable(x)
    assert same is x  # no layout copy
    assert strides[2] == (4 if layout == "NHWC" else 1)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_large_offset_is_stable(layout, path):
    rng = np.random.default_rng(3)
    shape = (2, 3, 16, 16)
    x = to_torch(1e4 + 0.01 * rng.standard_normal(shape), layout=layout, requires_grad=True)
    g = to_torch(rng.standard_normal(shape), layout=layout)
    y, dx, ref, gref = run(x, g)
    # E[x^2] - E[x]^2 or a mean held only in fp32 is off by percents here.
    assert normwise(y, ref) < 1e-4
    assert normwise(dx, gref) < 1e-4


@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_constant_planes(layout, path):
    x64 = np.broadcast_to(np.array([0.0, -3.5, 1e4])[None, :, None, None], (2, 3, 9, 7)).copy()
    g64 = make_upstream_grad(Case(shape=(2, 3, 9, 7)))
    x = to_torch(x64, layout=layout, requires_grad=True)
    y, dx, _, gref = run(x, to_torch(g64, layout=layout))
    assert torch.equal(y.detach(), torch.zeros_like(y))
    assert normwise(dx, gref) < TOLERANCE["float32"]


def test_mixed_and_exotic_strides():
    base = to_torch(make_input(Case(shape=(2, 3, 9, 8))), requires_grad=True)
    x = base[:, :, :, :5]  # H and W do not collapse into one stride: the one case that copies
    assert tf._plane_strides(x) is None
    g = to_torch(make_upstream_grad(Case(shape=(2, 3, 9, 5))), layout="NHWC")  # dy in another layout
    y, dx, ref, gref = run(x, g)
    assert normwise(y, ref) < TOLERANCE["float32"]
    assert normwise(dx, gref) < TOLERANCE["float32"]
    # An expanded (all-zero-stride) dy, as y.sum() gives.
    (dx,) = torch.autograd.grad(tf.PlaneNorm.apply(x, EPS).sum(), base)
    assert dx.abs().max() < 1e-4


def test_registered_builder():
    impl = registry.get("triton_fused")
    assert impl.framework == "triton" and impl.semantics == CANONICAL
    assert impl.description and "\n" not in impl.description
    case = Case(shape=(2, 3, 8, 8), layout="NHWC")
    x64 = make_input(case)
    fn = impl.builder(case)
    with torch.no_grad():
        y = fn(to_torch(x64, layout="NHWC"))
    assert detect_semantics(x64, y.double().cpu().numpy(), case.eps).label == CANONICAL
