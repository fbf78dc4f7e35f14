"""Tests for safe objective and constraint expressions (invdesign.properties.objective)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from invdesign.properties import Constraint, Objective, derive_all, parse_constraints

K = np.array([443.0, 140.0, 24.0])
G = np.array([535.0, 48.0, 15.0])
VALUES = derive_all(K, G, density=np.array([3.515, 8.96, 2.165]),
                    volume_per_atom=np.array([5.67, 11.8, 22.4]))  # fmt: skip


def test_parse_resolves_aliases_to_canonical_variables() -> None:
    obj = Objective.parse("E * alpha")
    assert obj.text == "E * alpha"
    assert obj.variables == {"youngs_modulus", "thermal_expansion"}
    assert Objective.parse("hardness * toughness").variables == {
        "hardness_chen", "fracture_toughness",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("E * alpha", VALUES["youngs_modulus"] * VALUES["thermal_expansion"]),
        ("hardness * toughness", VALUES["hardness_chen"] * VALUES["fracture_toughness"]),
        (
            "E * alpha - 0.1 * max(K, G)",
            VALUES["youngs_modulus"] * VALUES["thermal_expansion"] - 0.1 * np.maximum(K, G),
        ),
        ("K**0.5/G", np.sqrt(K) / G),
        ("-K + 2", 2 - K),
        ("min(K, G, 100)", np.minimum(np.minimum(K, G), 100)),
        ("abs(G - K)", np.abs(G - K)),
        ("log10(K) + log(G) - exp(-nu) * sqrt(G)",
         np.log10(K) + np.log(G) - np.exp(-VALUES["poisson_ratio"]) * np.sqrt(G)),
        ("bulk_modulus_vrh / shear_modulus", K / G),
    ],
)  # fmt: skip
def test_evaluate(text: str, expected: np.ndarray) -> None:
    got = Objective.parse(text).evaluate(VALUES)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected)


def test_evaluate_accepts_aliases_scalars_and_ignores_extra_keys() -> None:
    obj = Objective.parse("K / G")
    assert obj.evaluate({"K": 10.0, "shear_modulus_vrh": 4.0}) == pytest.approx(2.5)
    assert obj.evaluate({"K": [10.0, 20.0], "G": 5.0, "formula": "NaCl"}).tolist() == [2.0, 4.0]
    # A constant broadcasts to the shape of what it uses (nothing here).
    assert Objective.parse("3").evaluate({}) == pytest.approx(3.0)


def test_evaluate_missing_or_duplicate_values() -> None:
    obj = Objective.parse("E * alpha")
    with pytest.raises(ValueError, match="thermal_expansion"):
        obj.evaluate({"E": 1.0})
    with pytest.raises(ValueError, match="given twice"):
        Objective.parse("K").evaluate({"K": 1.0, "bulk_modulus": 2.0})


def test_invalid_arithmetic_gives_nan_or_inf_quietly() -> None:
    with np.errstate(all="raise"):  # evaluation must not trip on a caller's strict settings
        out = Objective.parse("log(K) / G").evaluate({"K": [-1.0, 1.0], "G": [1.0, 0.0]})
        big = Objective.parse("10**10**10").evaluate({})
    assert np.isnan(out[0])
    assert np.isnan(out[1])  # log(1) / 0 = 0 / 0
    assert np.isinf(big)


def test_unknown_name_is_named_and_known_names_listed() -> None:
    with pytest.raises(ValueError, match=r"'youngs'.*bulk_modulus_vrh"):
        Objective.parse("youngs * alpha")


MALICIOUS = [
    "__import__('os').system('x')",
    "K.__class__",
    "[1][0]",
    "'a'",
    "open('/etc/passwd')",
    "exec('1')",
    "eval('K')",
    "getattr(K, 'real')",
    "K.real",
    "K[0]",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in (1, 2)]",
    "{'a': 1}",
    "f'{K}'",
    "K if G else E",
    "K and G",
    "not K",
    "K // G",
    "K % G",
    "K @ G",
    "True",
    "1j",
    "...",
    "K > 100",
    "max(K)",
    "sqrt(K, G)",
    "sqrt(x=K)",
    "max(*K)",
    "(K := 1)",
    "",
    "K +",
    "K; import os",
    "x" * 2000,
    "-" * 900 + "K",
    "-" * 300 + "K",
    "(" * 250 + "K" + ")" * 250,
]


@pytest.mark.parametrize("text", MALICIOUS)
def test_malicious_or_unsupported_rejected(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(ValueError):
        Objective.parse(text)


@pytest.mark.parametrize(
    ("text", "piece"),
    [
        ("__import__('os').system('x')", "__import__('os').system('x')"),
        ("K.__class__", "K.__class__"),
        ("[1][0]", "[1][0]"),
        ("'a'", "'a'"),
        ("2 * open('f')", "open('f')"),
        ("K > 100", "K > 100"),
    ],
)
def test_error_names_offending_piece(text: str, piece: str) -> None:
    with pytest.raises(ValueError) as info:
        Objective.parse(text)
    assert piece in str(info.value)


def test_non_string_rejected() -> None:
    with pytest.raises(ValueError, match="string"):
        Objective.parse(42)  # type: ignore[arg-type]


# --- constraints -----------------------------------------------------------------------------


def test_constraint_simple_and_alias() -> None:
    c = Constraint.parse("K > 100")
    assert c.variables == {"bulk_modulus_vrh"}
    assert c.satisfied(VALUES).tolist() == [True, True, False]
    assert Constraint.parse("bulk_modulus <= 140").satisfied(VALUES).tolist() == [
        False, True, True,
    ]  # fmt: skip
    assert Constraint.parse("E / G >= 2.4").satisfied(VALUES).tolist() == [False, True, True]


def test_constraint_chained() -> None:
    c = Constraint.parse("50 < K < 300")
    assert c.satisfied(VALUES).tolist() == [False, True, False]
    assert Constraint.parse("10 <= G <= K").satisfied(VALUES).tolist() == [False, True, True]
    np.testing.assert_allclose(c.violation(VALUES), [143.0, 0.0, 26.0])


def test_constraint_nan_is_not_satisfied() -> None:
    c = Constraint.parse("K >= 100")
    values = {"K": np.array([np.nan, 200.0, 50.0])}
    assert c.satisfied(values).tolist() == [False, True, False]
    assert Constraint.parse("K < 100").satisfied(values).tolist() == [False, False, True]
    violation = c.violation(values)
    assert np.isinf(violation[0])
    assert violation[1:].tolist() == [0.0, 50.0]


@pytest.mark.parametrize(
    "text",
    ["K", "K == 100", "K != 100", "K in G", "K > 1 and G > 1", "1 < 2", "K > foo",
     "K.__class__ > 1", "__import__('os') < 1"],
)  # fmt: skip
def test_constraint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Constraint.parse(text)


def test_parse_constraints() -> None:
    cs = parse_constraints(["K > 100", "0 < nu < 0.3"])
    assert [c.text for c in cs] == ["K > 100", "0 < nu < 0.3"]
    assert parse_constraints(None) == []
    assert len(parse_constraints("G > 1")) == 1
    with pytest.raises(ValueError, match=r"#1.*bogus"):
        parse_constraints(["K > 1", "bogus > 1"])
