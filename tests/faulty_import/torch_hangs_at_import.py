"""Import-time fault: never finishes importing."""

import time

from bench.registry import register

time.sleep(3600)


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_hangs_at_import(case):
    return lambda x: x
