"""Discovery and @register validation; the built-in set by file name alone."""

import textwrap

import pytest

from bench.cases import Case
from bench.errors import BenchError
from bench.registry import Source, load, register, sources

BUILT_IN = {
    "keras_lambda", "keras_layer", "keras_group_norm", "keras_layer_norm", "torch_view", "torch_module",
    "torch_compile", "torch_instance_norm", "torch_group_norm", "torch_layer_norm", "tf_function", "tf_xla",
    "jax_jit",
}  # fmt: skip


def test_every_built_in_implementation_is_discovered():
    found = {s.stem: s.framework for s in sources(plugins=False)}
    assert set(found) >= BUILT_IN
    assert found["tf_xla"] == "tensorflow"
    assert found["keras_layer"] == "keras"


def test_bad_impl_path_is_an_error(tmp_path):
    with pytest.raises(BenchError, match="neither a directory nor a .py file"):
        sources([str(tmp_path / "nope")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"framework": "mxnet"}, "unknown framework 'mxnet'"),
        ({"std": "sample"}, "unknown std 'sample'"),
        ({"eps_at": "var"}, "unknown eps_at 'var'"),
        ({"layout": "CHWN"}, "unknown layout 'CHWN'"),
    ],
)
def test_register_rejects_bad_declarations(kwargs, match):
    decl = {"framework": "torch", "layout": "NCHW", "std": "population", "eps_at": "sqrt", **kwargs}
    with pytest.raises(BenchError, match=match):
        register(**decl)


def test_broken_module_is_unavailable_with_its_reason(tmp_path):
    bad = tmp_path / "torch_broken.py"
    bad.write_text("import not_a_real_package_xyz\n")
    (impl,) = load([Source("file", str(bad), "torch")])
    assert impl.name == "torch_broken"
    assert impl.unavailable == "ModuleNotFoundError: No module named 'not_a_real_package_xyz'"


def test_extra_file_registers_and_declares_support(tmp_path):
    mod = tmp_path / "torch_extra_decl.py"
    mod.write_text(
        textwrap.dedent('''
        """An extra implementation for the registry test."""
        from bench.registry import register

        @register(framework="torch", layout="NCHW", std="unbiased", eps_at="std", modes=("forward",))
        def torch_extra_decl(case):
            return lambda x: x
    ''')
    )
    (impl,) = load([Source("file", str(mod), "torch")])
    assert impl.description == "An extra implementation for the registry test."
    assert impl.semantics == "unbiased/eps@std"
    assert impl.unsupported_reason(Case(shape=(1, 1, 2, 2), mode="train")).startswith(
        "torch_extra_decl does not support mode train"
    )
    assert impl.unsupported_reason(Case(shape=(1, 1, 2, 2), layout="NHWC")) is not None
    assert impl.unsupported_reason(Case(shape=(1, 1, 2, 2))) is None
