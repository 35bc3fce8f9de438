"""Fault injection: returns its input unchanged (wrong, unless someone normalized it in place)."""

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_identity(case):
    return lambda x: x.clone()
