"""TensorFlow: the article's Lambda function under tf.function(jit_compile=True) (XLA)."""

import tensorflow as tf

from bench.registry import register
from implementations._tf_formula import per_channel_norm, spatial_axes


@register(
    framework="tensorflow",
    layout=("NHWC", "NCHW"),
    std="population",
    eps_at="std",
    backends=("xla",),
    compiled_from="keras_lambda",
)
def tf_xla(case):
    eps, axes = case.eps, spatial_axes(case.layout)
    return tf.function(lambda x: per_channel_norm(x, eps, axes), jit_compile=True)
