"""Discovery and @register validation: declarations read without importing, names free of prefixes."""

import textwrap

import pytest

from bench.cases import Case
from bench.errors import BenchError
from bench.registry import Declaration, Source, declarations, load_one, register, sources
from bench.workers import discover

BUILT_IN = {
    "keras_lambda", "keras_layer", "keras_group_norm", "keras_layer_norm", "torch_view", "torch_module",
    "torch_compile", "torch_instance_norm", "torch_group_norm", "torch_layer_norm", "tf_function", "tf_xla",
    "jax_jit", "triton_fused", "numpy_two_pass",
}  # fmt: skip


def test_every_built_in_implementation_is_declared_statically():
    declared = {d.name: d.framework for s in sources(plugins=False) for d in s.declared}
    assert set(declared) >= BUILT_IN
    assert declared["tf_xla"] == "tensorflow" and declared["keras_layer"] == "keras"
    assert declared["triton_fused"] == "triton" and declared["numpy_two_pass"] == "numpy"


def test_declarations_come_from_the_decorator_not_the_file_name():
    text = textwrap.dedent("""
        from bench.registry import register

        @register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", name="renamed")
        def fancy(case):
            return lambda x: x

        @register(framework="jax", layout="NHWC", std="population", eps_at="sqrt")
        def other(case):
            return lambda x: x
    """)
    declared, problem = declarations(text, "fancy_norm")
    assert problem == "" and declared == (Declaration("renamed", "torch"), Declaration("other", "jax"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("def f(:\n", "SyntaxError"),
        ("from bench.registry import register\nFW='torch'\n@register(framework=FW)\ndef f(c): ...\n",
         "@register(framework=...) of f must be a string literal"),
        ("x = 1\n", "declares no implementation"),
        ('from bench.registry import register\n@register(framework="mxnet")\ndef f(c): ...\n',
         "unknown framework 'mxnet'"),
    ],
)  # fmt: skip
def test_undeclared_or_unreadable_sources_say_why(text, problem):
    declared, why = declarations(text, "some_file")
    assert declared == () and why.startswith(problem)


def test_old_files_without_a_readable_declaration_fall_back_to_the_name_prefix():
    assert declarations("import torch\n", "torch_legacy") == ((Declaration("torch_legacy", "torch"),), "")


def test_bad_impl_path_is_an_error(tmp_path):
    with pytest.raises(BenchError, match="neither a directory nor a .py file"):
        sources([str(tmp_path / "nope")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"framework": "mxnet"}, "unknown framework 'mxnet'"),
        ({"std": "sample"}, "unknown semantics 'sample/eps@sqrt'; instance_norm's are: population/eps@sqrt,"),
        ({"eps_at": "var"}, "unknown semantics 'population/eps@var'"),
        ({"std": None}, "no semantics declared; expected semantics= one of instance_norm's: population/eps@"),
        ({"semantics": "population/eps@sqrt"}, "declare one, not both"),
        ({"semantics": "rms", "std": None, "eps_at": None}, "unknown semantics 'rms'"),
        ({"layout": "CHWN"}, "unknown layout 'CHWN'"),
        ({"roles": ("winner",)}, "unknown role 'winner'"),
        ({"framework": "keras", "backends": ("mxnet",)}, "unknown keras backend 'mxnet'"),
    ],
)
def test_register_rejects_bad_declarations(kwargs, match):
    decl = {"framework": "torch", "layout": "NCHW", "std": "population", "eps_at": "sqrt", **kwargs}
    with pytest.raises(BenchError, match=match):
        register(**decl)


def _file_source(path):
    text = path.read_text()
    declared, problem = declarations(text, path.stem)
    return Source("file", str(path), declared, problem)


def test_broken_module_is_unavailable_with_its_reason(tmp_path):
    bad = tmp_path / "torch_broken.py"
    bad.write_text("import not_a_real_package_xyz\n")
    (impl,) = load_one(_file_source(bad), "torch")
    assert impl.name == "torch_broken"
    assert impl.unavailable == "ModuleNotFoundError: No module named 'not_a_real_package_xyz'"


@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "SystemExit(3)"])
def test_keyboard_interrupt_or_exit_at_import_is_the_files_own_failure(tmp_path, raised):
    bad = tmp_path / "torch_quits.py"
    bad.write_text(f"raise {raised}\n")
    (impl,) = load_one(_file_source(bad), "torch")
    assert impl.unavailable.startswith(raised.split("(")[0])


def test_extra_file_registers_and_declares_support(tmp_path):
    mod = tmp_path / "extra_decl.py"  # no framework prefix: the declaration says torch
    mod.write_text(
        textwrap.dedent('''
        """An extra implementation for the registry test."""
        from bench.registry import register

        @register(framework="torch", layout="NCHW", std="unbiased", eps_at="std", modes=("forward",),
                  roles=("article",), compiled_from="torch_module")
        def torch_extra_decl(case):
            return lambda x: x
    ''')
    )
    (impl,) = load_one(_file_source(mod), "torch")
    assert impl.description == "An extra implementation for the registry test."
    assert impl.semantics == "unbiased/eps@std" and impl.roles == ("article",)
    assert impl.compiled_from == "torch_module" and impl.source == f"file {mod}"
    assert impl.unsupported_reason(Case(shape=(1, 1, 2, 2), mode="train")).startswith(
        "torch_extra_decl does not support mode train"
    )
    assert impl.unsupported_reason(Case(shape=(1, 1, 2, 2), layout="NHWC")) is not None
    assert impl.unsupported_reason(Case(shape=(1, 1, 2, 2))) is None


def test_a_copied_built_in_is_a_duplicate_and_the_built_in_stays(tmp_path):
    """`cp implementations/torch_module.py my/`: the copy must not hide the built-in, and the
    report names the copy, not the file that happened to import torch_module first."""
    from bench.registry import IMPL_DIR

    my = tmp_path / "my"
    my.mkdir()
    (my / "torch_module.py").write_text((IMPL_DIR / "torch_module.py").read_text())
    (my / "jax_clash.py").write_text(
        "from bench.registry import register\n\n\n"
        '@register(framework="jax", layout="NCHW", std="population", eps_at="sqrt")\n'
        "def torch_group_norm(case):\n    return lambda x: x\n"
    )
    found = sources([str(my)], plugins=False)
    disc = discover(found, threads=1, only={"torch_module", "torch_compile", "torch_group_norm"})
    assert disc.impls["torch_module"].source == f"file {IMPL_DIR / 'torch_module.py'}"
    assert not disc.impls["torch_module"].unavailable and not disc.impls["torch_compile"].unavailable
    assert disc.impls["torch_group_norm"].framework == "torch"
    dups = {(d.name, d.source) for d in disc.duplicates}
    assert dups == {
        ("torch_module", f"file {my / 'torch_module.py'}"),
        ("torch_group_norm", f"file {my / 'jax_clash.py'}"),
    }
    for d in disc.duplicates:
        assert d.unavailable.startswith(f"duplicate name {d.name!r}: ") and str(IMPL_DIR) in d.unavailable
