"""Keras: a Layer subclass with Example 1's maths in keras.ops (backend-neutral)."""

import keras
from keras import ops

from bench.registry import register


class PerChannelNorm(keras.layers.Layer):
    def __init__(self, eps, axes, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps
        self.axes = axes

    def call(self, x):
        mean = ops.mean(x, axis=self.axes, keepdims=True)
        std = ops.std(x, axis=self.axes, keepdims=True) + self.eps  # population std, as tf.math's
        return (x - mean) / std


@register(framework="keras", layout=("NHWC", "NCHW"), std="population", eps_at="std")
def keras_layer(case):
    axes = (1, 2) if case.layout == "NHWC" else (2, 3)
    return PerChannelNorm(case.eps, axes, dtype=case.dtype)
