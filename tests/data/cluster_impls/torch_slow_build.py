"""For stop tests: with NORMBENCH_TEST_MARK set, building it for a plane of 16x16 or more writes
that file and then takes NORMBENCH_TEST_SLOW_S seconds (default 20), so a test can stop a run
while this case is in flight; elsewhere, and once the file exists, it builds at once."""

import os
import time
from pathlib import Path

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def torch_slow_build(case):
    mark = os.environ.get("NORMBENCH_TEST_MARK")
    if mark and case.shape[2] * case.shape[3] >= 16 * 16 and not Path(mark).exists():
        Path(mark).write_text(str(os.getpid()))
        time.sleep(float(os.environ.get("NORMBENCH_TEST_SLOW_S", "20")))
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
