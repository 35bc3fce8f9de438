"""TensorFlow: GroupNorm(G)'s formula in tf.math under tf.function (graph mode, no XLA)."""

import tensorflow as tf

from bench.registry import register


@register(
    op="group_norm",
    framework="tensorflow",
    layout=("NHWC", "NCHW"),
    std="population",
    eps_at="sqrt",
    backends=("function",),
)
def tf_groupnorm_function(case):
    eps, g = case.eps, case.params()["num_groups"]
    n, c, h, w = case.shape
    nhwc = case.layout == "NHWC"

    @tf.function
    def group_norm(x):
        if nhwc:
            xg, axes = tf.reshape(x, (n, h, w, g, c // g)), (1, 2, 4)
        else:
            xg, axes = tf.reshape(x, (n, g, c // g, h, w)), (2, 3, 4)
        mean, var = tf.nn.moments(xg, axes=axes, keepdims=True)
        return tf.reshape((xg - mean) * tf.math.rsqrt(var + eps), tf.shape(x))

    return group_norm
