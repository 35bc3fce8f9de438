"""Fault injection: never returns."""

import time

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_hang(case):
    def hang(x):
        time.sleep(3600)

    return hang
