"""The float64 reference: semantics detection on constructed inputs, the analytic gradient."""

import numpy as np
import pytest

from bench import reference
from bench.cases import Case
from bench.reference import accuracy
from tests.instance_norm import (
    CANONICAL,
    OP,
    SEMANTICS,
    detect_semantics,
    make_input,
    make_upstream_grad,
    normalize,
    normalize_grad,
)

CASE = Case(shape=(2, 5, 9, 7), eps=1e-5)


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_detects_each_semantics_exactly(semantics):
    x = make_input(CASE)
    assert detect_semantics(x, normalize(x, CASE.eps, semantics), CASE.eps).label == semantics


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_detects_semantics_through_float32_rounding(semantics):
    x = make_input(Case(shape=(4, 8, 16, 16)))
    y32 = normalize(x, 1e-5, semantics).astype(np.float32)
    assert detect_semantics(x, y32, 1e-5).label == semantics


def test_wrong_formula_is_other():
    x = make_input(CASE)
    assert detect_semantics(x, x - x.mean(axis=(2, 3), keepdims=True), CASE.eps).label == "other"
    nan = detect_semantics(x, np.full_like(x, np.nan), CASE.eps)
    assert nan.label == "other" and nan.mismatches(CANONICAL)


def test_bfloat16_like_rounding_is_ambiguous_or_right():
    x = make_input(Case(shape=(2, 4, 4, 4)))
    y = normalize(x, 1e-5, CANONICAL)
    coarse = np.round(y * 8) / 8  # about 3 significant bits: cannot tell eps placement apart
    got = detect_semantics(x, coarse, 1e-5)
    assert got.label.startswith("ambiguous") or got.label in SEMANTICS


def test_candidates_closer_than_the_dtype_resolution_are_indistinguishable_not_a_mismatch():
    """bfloat16 at 56x56 planes: population and unbiased scales differ by 1.6e-4, far below
    bfloat16's 3.9e-3 rounding unit, so whichever fits best by chance must not be a mismatch."""
    x = make_input(Case(shape=(2, 8, 56, 56)))
    y = normalize(x, 1e-5, "unbiased/eps@sqrt")  # what a lucky fit of rounded output looks like
    got = detect_semantics(x, y, 1e-5, dtype="bfloat16")
    assert got.label.startswith("indistinguishable at bfloat16, 3136-element planes: ")
    assert CANONICAL in got.candidates and "unbiased/eps@sqrt" in got.candidates
    assert not got.mismatches(CANONICAL)
    # The same output in float32 is decisive: the difference is 2700x float32's rounding unit.
    assert detect_semantics(x, y, 1e-5, dtype="float32").label == "unbiased/eps@sqrt"
    # 48-pixel planes keep population and unbiased 1 % apart: told apart even in bfloat16.
    small = make_input(Case(shape=(2, 3, 6, 8)))
    got = detect_semantics(small, normalize(small, 1e-5, CANONICAL), 1e-5, dtype="bfloat16")
    assert "unbiased/eps@sqrt" not in got.candidates and CANONICAL in got.candidates


def test_input_is_seeded_offset_and_never_zero():
    a, b = make_input(CASE), make_input(CASE)
    assert np.array_equal(a, b)
    assert np.all(a != 0)
    assert np.abs(a.mean(axis=(2, 3))).min() > 0.1


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_analytic_gradient_matches_float64_autograd(semantics):
    torch = pytest.importorskip("torch")
    x = make_input(CASE)
    g = make_upstream_grad(CASE)
    xt = torch.tensor(x, requires_grad=True)
    std, at = semantics.split("/eps@")
    mean = xt.mean(dim=(2, 3), keepdim=True)
    var = xt.var(dim=(2, 3), keepdim=True, unbiased=std == "unbiased")
    s = torch.sqrt(var + CASE.eps) if at == "sqrt" else torch.sqrt(var) + CASE.eps
    y = (xt - mean) / s
    (grad,) = torch.autograd.grad(y, xt, torch.tensor(g))
    np.testing.assert_allclose(y.detach().numpy(), normalize(x, CASE.eps, semantics), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad.numpy(), normalize_grad(x, g, CASE.eps, semantics), rtol=1e-9, atol=1e-10)


def test_accuracy_counts_nonfinite_and_ignores_them():
    ref = np.ones((1, 1, 2, 2))
    out = np.array([[[[1.0, np.nan], [np.inf, 1.5]]]])
    acc = accuracy(out, ref)
    assert acc.nonfinite_outputs == 2
    assert acc.max_abs_err == pytest.approx(0.5)
    assert acc.max_rel_err == pytest.approx(0.5)


def test_ideal_bytes_per_mode():
    for mode, passes in (("forward", 2), ("backward", 3), ("train", 5)):
        case = Case(shape=(2, 3, 4, 5), dtype="bfloat16", mode=mode)
        assert case.ideal_bytes == passes * 120 * 2


def test_the_shared_case_reference_matches_the_textbook_formulas_computed_once():
    """What every implementation's check reuses: each semantics' output is the textbook formula
    (NumPy's var over each plane), computed once per case reference."""
    case = Case(shape=(2, 5, 7, 6), mode="train")
    x, g = make_input(case), make_upstream_grad(case)
    ref = OP.reference(x, case, g)
    mean = x.mean(axis=(2, 3), keepdims=True)
    for semantics in SEMANTICS:
        std, at = semantics.split("/eps@")
        var = x.var(axis=(2, 3), keepdims=True, ddof=1 if std == "unbiased" else 0)
        s = np.sqrt(var + case.eps) if at == "sqrt" else np.sqrt(var) + case.eps
        np.testing.assert_allclose(ref.output(semantics), (x - mean) / s, rtol=1e-12, atol=1e-12)
        assert ref.output(semantics) is ref.output(semantics)  # computed once
        assert ref.grad(semantics) is ref.grad(semantics)
        y = ref.output(semantics).astype(np.float32)
        assert ref.detect(y).label == semantics
    with pytest.raises(ValueError, match="no upstream gradient"):
        OP.reference(x, case).grad(CANONICAL)


def test_accuracy_counts_nonfinite_outputs_and_skips_them():
    ref = np.array([1.0, -2.0, 4.0, 0.5])
    assert reference.accuracy(ref + 0.01, ref) == reference.Accuracy(
        pytest.approx(0.01), pytest.approx(0.0025), 0
    )
    got = reference.accuracy(np.array([1.0, np.nan, 4.5, np.inf]), ref)
    assert (
        got.nonfinite_outputs == 2
        and got.max_abs_err == pytest.approx(0.5)
        and got.max_rel_err == pytest.approx(0.125)
    )
