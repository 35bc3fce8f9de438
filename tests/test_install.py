"""The first-use installer: pip without its one-core byte-compilation, then compileall on every core."""

import sys

from bench import install


def test_byte_compile_writes_what_pip_would_have_even_where_python_writes_no_bytecode(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as on CI: imports alone would never write them
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "fine.py").write_text("x = 1\n")
    (pkg / "py2_example.py").write_text("print 'shipped for another Python'\n")
    install.byte_compile([str(tmp_path), str(tmp_path / "absent")])
    compiled = {p.name.split(".")[0] for p in (pkg / "__pycache__").glob("*.pyc")}
    assert compiled == {"fine"}  # the broken file is left as it is, and is no error


def test_packages_are_compiled_once_and_only_in_this_interpreters_own_folders(monkeypatch):
    assert all(d.startswith(sys.prefix) for d in install.install_dirs())
    compiled, pip_calls = [], []
    monkeypatch.setattr(install, "byte_compile", compiled.append)
    monkeypatch.setattr(install, "pip_install", lambda reqs: pip_calls.append(reqs) or True)
    monkeypatch.setattr(install, "missing", lambda pairs: [])  # everything already importable
    assert install.main() == 0
    assert pip_calls == [[]] and compiled == []  # nothing installed: nothing to compile

    state = {"installed": False}

    def missing(pairs):
        return [] if state["installed"] else [p for p in pairs if p[0] == "psutil"]

    def pip(reqs):
        pip_calls.append(reqs)
        state["installed"] = True
        return True

    monkeypatch.setattr(install, "missing", missing)
    monkeypatch.setattr(install, "pip_install", pip)
    assert install.main() == 0
    assert pip_calls[-1] == ["psutil"] and compiled == [install.install_dirs()]
