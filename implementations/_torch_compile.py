"""What every torch.compile implementation does before it compiles, in one place."""

import torch
import torch._dynamo
import torch._functorch.config


def compile_fresh(module: torch.nn.Module, case) -> torch.nn.Module:
    """torch.compile of `module` for one case: a fresh compile (no cache-size-limit fallback to
    eager across a shape sweep), static shapes (no dynamic-shape recompile mid-measurement), and
    no donated buffers in backward mode (they free the saved activations after one backward; the
    harness times backward again on one recorded graph, retain_graph=True, which they refuse)."""
    torch._dynamo.reset()
    torch._functorch.config.donated_buffer = case.mode != "backward"
    return torch.compile(module.to(case.device), dynamic=False)
