"""Import-time fault: ends the process that imports it."""

import os

from bench.registry import register

os._exit(1)


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_dies_at_import(case):
    return lambda x: x
