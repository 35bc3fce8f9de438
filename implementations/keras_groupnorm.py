"""Keras built-in for GroupNorm(G): GroupNormalization(groups=G), no affine."""

import keras

from bench.registry import register


@register(op="group_norm", framework="keras", layout=("NHWC", "NCHW"), std="population", eps_at="sqrt")
def keras_groupnorm(case):
    return keras.layers.GroupNormalization(
        groups=case.params()["num_groups"],
        axis=-1 if case.layout == "NHWC" else 1,
        epsilon=case.eps,
        center=False,
        scale=False,
        dtype=case.dtype,
    )
