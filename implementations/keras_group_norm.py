"""Keras built-in: GroupNormalization(groups=-1), one group per channel, no affine."""

import keras

from bench.registry import register


@register(framework="keras", layout=("NHWC", "NCHW"), std="population", eps_at="sqrt")
def keras_group_norm(case):
    return keras.layers.GroupNormalization(
        groups=-1,
        axis=-1 if case.layout == "NHWC" else 1,
        epsilon=case.eps,
        center=False,
        scale=False,
        dtype=case.dtype,
    )
