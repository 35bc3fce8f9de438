"""JAX: Example 1's maths (population std, eps added to it) in jax.numpy under jax.jit."""

import jax
import jax.numpy as jnp

from bench.registry import register


@register(framework="jax", layout=("NHWC", "NCHW"), std="population", eps_at="std")
def jax_jit(case):
    eps = case.eps
    axes = (1, 2) if case.layout == "NHWC" else (2, 3)

    @jax.jit
    def per_channel_norm(x):
        mean = jnp.mean(x, axis=axes, keepdims=True)
        std = jnp.std(x, axis=axes, keepdims=True) + eps
        return (x - mean) / std

    return per_channel_norm
