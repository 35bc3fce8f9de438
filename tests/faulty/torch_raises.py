"""Fault injection: raises a Python exception."""

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_raises(case):
    def fail(x):
        raise ValueError("deliberate failure for the fault-injection test")

    return fail
