"""Fault injection: returns a tensor of the wrong shape."""

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_wrong_shape(case):
    return lambda x: x.mean(dim=(2, 3))
