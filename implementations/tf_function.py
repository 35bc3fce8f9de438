"""TensorFlow: the article's Lambda function under tf.function (graph mode, no XLA)."""

import tensorflow as tf

from bench.registry import register
from implementations._tf_formula import per_channel_norm, spatial_axes


@register(
    framework="tensorflow",
    layout=("NHWC", "NCHW"),
    std="population",
    eps_at="std",
    backends=("function",),
    compiled_from="keras_lambda",
)
def tf_function(case):
    eps, axes = case.eps, spatial_axes(case.layout)
    return tf.function(lambda x: per_channel_norm(x, eps, axes))
