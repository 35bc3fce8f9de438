"""Keras: the article's Example 1, a keras.Model around a Lambda layer using tf.math (NHWC)."""

import keras
import tensorflow as tf  # noqa: F401  the Lambda's maths is TensorFlow's: tensorflow backend only

from bench.registry import register
from implementations._tf_formula import per_channel_norm


@register(
    framework="keras",
    layout="NHWC",
    std="population",
    eps_at="std",
    backends=("tensorflow",),
    roles=("article",),
)
def keras_lambda(case):
    n, c, h, w = case.shape
    eps = case.eps
    inputs = keras.Input(shape=(h, w, c), dtype=case.dtype)
    # dtype on the layer: otherwise Keras autocasts float16/bfloat16 inputs to float32.
    outputs = keras.layers.Lambda(lambda x: per_channel_norm(x, eps), dtype=case.dtype)(inputs)
    return keras.Model(inputs=inputs, outputs=outputs)
