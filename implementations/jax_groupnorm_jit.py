"""JAX: GroupNorm(G)'s formula in jax.numpy under jax.jit (population variance, eps in the sqrt)."""

import jax
import jax.numpy as jnp

from bench.registry import register


@register(op="group_norm", framework="jax", layout=("NHWC", "NCHW"), std="population", eps_at="sqrt")
def jax_groupnorm_jit(case):
    eps, g = case.eps, case.params()["num_groups"]
    nhwc = case.layout == "NHWC"

    @jax.jit
    def group_norm(x):
        shape = x.shape
        if nhwc:  # (N, H, W, C) -> (N, H, W, G, C/G): statistics over H, W and C/G
            xg, axes = x.reshape(*shape[:3], g, shape[3] // g), (1, 2, 4)
        else:  # (N, C, H, W) -> (N, G, C/G, H, W)
            xg, axes = x.reshape(shape[0], g, shape[1] // g, *shape[2:]), (2, 3, 4)
        mean = jnp.mean(xg, axis=axes, keepdims=True)
        var = jnp.var(xg, axis=axes, keepdims=True)
        return ((xg - mean) / jnp.sqrt(var + eps)).reshape(shape)

    return group_norm
