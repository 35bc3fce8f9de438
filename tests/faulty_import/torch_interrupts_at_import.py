"""Import-time fault: raises KeyboardInterrupt while it is imported."""

from bench.registry import register

raise KeyboardInterrupt


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_interrupts_at_import(case):
    return lambda x: x
