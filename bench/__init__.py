"""normbench: comparative benchmarks of per-channel normalization."""

__version__ = "0.1.0"
