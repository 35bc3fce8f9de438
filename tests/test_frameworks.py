"""Adapter details that the end-to-end run cannot see: every timed buffer gets the right gradient."""

import pytest

from bench import reference
from bench.cases import Case

jax_adapter = pytest.importorskip("bench.frameworks.jax_adapter")


def test_jax_backward_reuses_one_compiled_pullback_for_every_buffer():
    import jax
    import jax.numpy as jnp

    case = Case((2, 3, 8, 8), mode="backward")
    x64s = [reference.make_input(Case(case.shape, seed=s)) for s in range(4)]
    g64 = reference.make_upstream_grad(case)
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
        want = reference.normalize_grad(x64, g64, case.eps, "population/eps@sqrt")
        assert reference.accuracy(dx, want).max_rel_err < 1e-4, f"buffer {i}"
    assert len(traces) == 1, f"the pullback was traced {len(traces)} times for {len(xs)} buffers"
