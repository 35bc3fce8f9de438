"""Keras built-in: LayerNormalization over the two spatial axes, no affine."""

import keras

from bench.registry import register


@register(framework="keras", layout=("NHWC", "NCHW"), std="population", eps_at="sqrt")
def keras_layer_norm(case):
    axes = [1, 2] if case.layout == "NHWC" else [2, 3]
    return keras.layers.LayerNormalization(
        axis=axes, epsilon=case.eps, center=False, scale=False, dtype=case.dtype
    )
