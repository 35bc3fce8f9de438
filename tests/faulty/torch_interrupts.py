"""Fault injection: raises KeyboardInterrupt inside the call (the worker must report what was raised)."""

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_interrupts(case):
    def forward(x):
        raise KeyboardInterrupt("from inside the implementation")

    return forward
