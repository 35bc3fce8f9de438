"""The article's Example 1 maths in tf.math, shared by keras_lambda, tf_function and tf_xla."""

import tensorflow as tf


def per_channel_norm(x, eps, axes=(1, 2)):
    mean = tf.math.reduce_mean(x, axis=axes, keepdims=True)
    std = tf.math.reduce_std(x, axis=axes, keepdims=True) + eps  # reduce_std is the population std
    return (x - mean) / std


def spatial_axes(layout):
    return (1, 2) if layout == "NHWC" else (2, 3)
