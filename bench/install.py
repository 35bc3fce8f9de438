"""First-use installer for `make install`: adds only what this interpreter cannot already import.

The frameworks' pins come from their descriptions in bench/frameworks/ (read without numpy, which a
fresh interpreter may not have yet); a framework that cannot be installed (an offline GPU box) is
reported and its implementations run as unavailable.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig

# (import name, pip requirement). CPU pins: an open torch range pulls several GB of CUDA packages.
CORE = [
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("matplotlib", "matplotlib"),
    ("jinja2", "jinja2"),
    ("psutil", "psutil"),
    ("rich", "rich"),
    ("pytest", "pytest"),
    ("pytest_benchmark", "pytest-benchmark"),
    ("xdist", "pytest-xdist"),
    ("ruff", "ruff"),
    ("mypy", "mypy"),
]
# Not frameworks of their own: numba_fused's kernels (run in the torch worker), and the cluster
# executor of `bench submit`.
EXTRAS = [("numba", "numba==0.68.*"), ("submitit", "submitit==1.5.*")]


def framework_pins() -> list[tuple[str, str]]:
    from bench.frameworks import frameworks

    return [(fw.modules[0], fw.requirement) for fw in frameworks().values() if fw.requirement]


def missing(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(mod, req) for mod, req in pairs if importlib.util.find_spec(mod) is None]


def pip_install(requirements: list[str]) -> bool:
    if not requirements:
        return True
    print(f"normbench install: pip install {' '.join(requirements)}", flush=True)
    # --retries 0: an offline GPU box should give up in seconds, not minutes. --no-compile: pip
    # byte-compiles on one core; byte_compile() does it afterwards on all of them.
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--retries", "0", "--timeout", "30"]
    return subprocess.run([*cmd, *requirements], check=False).returncode == 0


def install_dirs() -> list[str]:
    """Where pip installs for this interpreter: the venv's own site-packages, never the system's."""
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


def byte_compile(dirs: list[str]) -> None:
    """What pip would have compiled, in parallel: with PYTHONDONTWRITEBYTECODE set (as on CI),
    nothing else ever writes the .pyc files, and every import of a framework would compile its
    source again. Files already compiled are skipped; a file that does not compile (some packages
    ship examples for other Pythons) is left as it is, as pip leaves it."""
    dirs = [d for d in dirs if os.path.isdir(d)]
    if not dirs:
        return
    print(f"normbench install: byte-compiling {', '.join(dirs)} (every core)", flush=True)
    cmd = [sys.executable, "-m", "compileall", "-q", "-q", "-j", "0", *dirs]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)


def main() -> int:
    optional = framework_pins() + EXTRAS
    core, wanted = missing(CORE), missing(optional)
    if not pip_install([req for _, req in core + wanted]):
        # One batch failed (offline box, or one package unreachable): try each so the reachable land.
        for _, req in core + wanted:
            pip_install([req])
    if core + wanted:
        byte_compile(install_dirs())
    still_core = missing(CORE)
    if still_core:
        names = ", ".join(req for _, req in still_core)
        print(f"normbench install: required packages missing and not installable: {names}", file=sys.stderr)
        return 1
    for mod, req in missing(optional):
        print(
            f"normbench install: {mod} not available ({req} could not be installed); "
            "what needs it will be reported unavailable"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
