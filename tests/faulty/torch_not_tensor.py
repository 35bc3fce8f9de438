"""Fault injection: returns a list instead of a tensor."""

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_not_tensor(case):
    return lambda x: x.tolist()
