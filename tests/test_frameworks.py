"""Framework descriptions and adapters: discovery, the declared interface, and details the end-to-end
run cannot see (every timed buffer gets the right gradient; an input restored without autograd noticing)."""

from functools import partial

import pytest

from bench import reference
from bench.cases import Case
from bench.memory import Copier
from tests import instance_norm

jax_adapter = pytest.importorskip("bench.frameworks.jax_adapter").make()


def test_jax_backward_compiles_the_linearization_and_the_pullback_once_for_every_buffer():
    import jax
    import jax.numpy as jnp

    case = Case((2, 3, 8, 8), mode="backward")
    x64s = [instance_norm.make_input(Case(case.shape, seed=s)) for s in range(4)]
    g64 = instance_norm.make_upstream_grad(case)
    xs = [jax_adapter.to_tensor(x, case) for x in x64s]

    def fn(x):
        mean = jnp.mean(x, axis=(2, 3), keepdims=True)
        return (x - mean) / jnp.sqrt(jnp.var(x, axis=(2, 3), keepdims=True) + case.eps)

    traces = []
    real_jit = jax.jit

    def counting_jit(f):
        def traced(*args):
            traces.append(1)
            return f(*args)

        return real_jit(traced)

    jax.jit = counting_jit
    try:
        call = jax_adapter.make_call(fn, case, xs, g64)
    finally:
        jax.jit = real_jit
    for i, x64 in enumerate(x64s):
        dx = jax_adapter.to_numpy(jax_adapter.finish(call(i), "cpu"), case, "gradient")
        want = instance_norm.normalize_grad(x64, g64, case.eps, "population/eps@sqrt")
        assert reference.accuracy(dx, want).max_rel_err < 1e-4, f"buffer {i}"
    # One trace of the linearization and one of the pullback's application, for every buffer.
    assert len(traces) == 2, f"{len(traces)} traces for {len(xs)} buffers"


def test_frameworks_are_discovered_and_described_without_importing_them():
    import sys

    from bench.frameworks import frameworks

    known = frameworks()
    assert set(known) == {"jax", "keras", "numpy", "tensorflow", "torch", "triton"}
    assert known["keras"].expand(("tensorflow", "jax")) == ("tensorflow", "jax")
    assert known["torch"].expand(("eager",)) == (None,)
    assert known["keras"].env(2, "jax")["KERAS_BACKEND"] == "jax"
    assert known["tensorflow"].env(1, None)["TF_NUM_INTRAOP_THREADS"] == "1"
    assert known["numpy"].no_autograd and known["triton"].adapter_module(None).endswith("torch_adapter")
    assert "tensorflow" not in sys.modules or "tensorflow" in sys.argv[0]  # descriptions import nothing


@pytest.mark.parametrize("name", ["torch", "jax", "numpy", "tensorflow"])
def test_every_adapter_has_the_declared_interface(name):
    from bench.frameworks import Adapter

    module = pytest.importorskip(f"bench.frameworks.{name}_adapter")
    adapter = module.make()
    for member in [m for m in dir(Adapter) if not m.startswith("_")] + ["name", "mutable_inputs"]:
        assert hasattr(adapter, member), f"{name} adapter lacks {member}"
    # Its speed-of-light copy: whole passes, and shorter ones rotating through the footprint.
    copier = Copier(partial(adapter.copy_pieces, "cpu"), 128 << 20)
    assert copier.gbps(64 << 20) > 0 and copier.gbps(128 << 20, 32 << 20) > 0


def test_torch_inputs_are_restored_without_bumping_the_version_autograd_checks():
    torch = pytest.importorskip("torch")
    from bench.frameworks.torch_adapter import make

    ad = make()
    case = Case((2, 3, 8, 8), layout="NHWC")
    xs = [ad.to_tensor(instance_norm.make_input(case), case) for _ in range(2)]
    snap = ad.snapshot(xs)
    leaf = xs[1].detach().requires_grad_(True)
    y = (leaf * leaf).sum()  # saves leaf for backward
    xs[1].mul_(16)
    assert ad.changed(xs, snap, full=False) > 0 and ad.changed(xs, snap, full=True) == 2 * 3 * 8 * 8
    version = xs[1]._version
    ad.restore(xs, snap)
    assert ad.changed(xs, snap, full=True) == 0 and xs[1]._version == version
    assert xs[1].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()  # the mutation itself is still seen by autograd, as it must be
