"""Objective and constraint expressions over named properties, parsed safely.

Text such as ``"E * alpha - 0.1 * max(K, G)"`` or ``"50 < K < 300"`` is parsed with
:func:`ast.parse` and checked against a whitelist of node types; nothing is ever passed to
``eval``/``exec``. Allowed: numbers, property names and aliases (resolved through the registry),
``+ - * / **``, unary ``-``/``+``, parentheses and the functions ``min, max, abs, log10, log, exp,
sqrt``. Constraints add the comparisons ``< <= > >=`` (chains allowed) around such expressions.
Evaluation is vectorised with numpy; invalid arithmetic (log of a negative, 0/0, overflow) gives
NaN or inf quietly instead of raising.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .registry import UnknownPropertyError, canonical_name, is_known

__all__ = ["Constraint", "Objective", "parse_constraints"]

_MAX_LENGTH = 1000  # characters; guards the parser against pathological input
_MAX_DEPTH = 200  # nesting levels; keeps the recursive checker and evaluator shallow

_BINARY_OPS: dict[type[ast.operator], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[np.ndarray], np.ndarray]] = {
    ast.USub: np.negative,
    ast.UAdd: np.positive,
}
_COMPARE_OPS: dict[type[ast.cmpop], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
_UNARY_FUNCS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "log10": np.log10,
    "log": np.log,
    "exp": np.exp,
    "sqrt": np.sqrt,
}
_VARIADIC_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "min": np.minimum,
    "max": np.maximum,
}
_FUNCTION_NAMES = ", ".join(sorted([*_UNARY_FUNCS, *_VARIADIC_FUNCS]))


def _snippet(text: str, node: ast.AST) -> str:
    """Source text of ``node`` for error messages."""
    segment = ast.get_source_segment(text, node)
    return segment if segment is not None else ast.unparse(node)


def _parse_tree(text: str, kind: str) -> tuple[str, ast.expr]:
    """Parse ``text`` as one Python expression, turning every failure into ValueError.

    Returns:
        The text stripped of surrounding whitespace, and the expression node.
    """
    if not isinstance(text, str):
        raise ValueError(f"{kind} must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError(f"{kind} is empty")
    if len(text) > _MAX_LENGTH:
        raise ValueError(f"{kind} is longer than {_MAX_LENGTH} characters")
    try:
        return text, ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"cannot parse {kind} {text!r}: {exc}") from None


def _check(node: ast.AST, text: str, names: set[str], depth: int = 0) -> None:
    """Validate an arithmetic expression tree; collect canonical property names into ``names``.

    Raises:
        ValueError: Any node outside the whitelist, naming the offending piece of ``text``.
    """
    if depth > _MAX_DEPTH:
        raise ValueError(f"{text!r} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(f"only numbers are allowed as constants, not {_snippet(text, node)!r}")
    elif isinstance(node, ast.Name):
        try:
            names.add(canonical_name(node.id))
        except UnknownPropertyError as exc:
            raise ValueError(f"in {text!r}: {exc}") from None
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY_OPS:
            raise ValueError(f"operator not allowed in {_snippet(text, node)!r}; use + - * / **")
        _check(node.left, text, names, depth + 1)
        _check(node.right, text, names, depth + 1)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY_OPS:
            raise ValueError(f"operator not allowed in {_snippet(text, node)!r}")
        _check(node.operand, text, names, depth + 1)
    elif isinstance(node, ast.Call):
        _check_call(node, text, names, depth)
    elif isinstance(node, ast.Compare):
        raise ValueError(
            f"comparison {_snippet(text, node)!r} is not allowed here; write it as a constraint"
        )
    else:
        raise ValueError(
            f"{type(node).__name__.lower()} {_snippet(text, node)!r} is not allowed; use numbers, "
            f"property names, + - * / ** and the functions {_FUNCTION_NAMES}"
        )


def _check_call(node: ast.Call, text: str, names: set[str], depth: int) -> None:
    """Validate a whitelisted function call (plain name, positional arguments only)."""
    func = node.func
    if not isinstance(func, ast.Name) or func.id not in {*_UNARY_FUNCS, *_VARIADIC_FUNCS}:
        raise ValueError(
            f"call {_snippet(text, node)!r} is not allowed; allowed functions: {_FUNCTION_NAMES}"
        )
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ValueError(f"{_snippet(text, node)!r}: only positional arguments are allowed")
    n_args = len(node.args)
    if func.id in _UNARY_FUNCS and n_args != 1:
        raise ValueError(f"{_snippet(text, node)!r}: {func.id}() takes exactly 1 argument")
    if func.id in _VARIADIC_FUNCS and n_args < 2:
        raise ValueError(f"{_snippet(text, node)!r}: {func.id}() takes at least 2 arguments")
    for arg in node.args:
        _check(arg, text, names, depth + 1)


def _evaluate(node: ast.AST, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a tree already accepted by :func:`_check`."""
    if isinstance(node, ast.Constant):
        return np.asarray(float(node.value))
    if isinstance(node, ast.Name):
        return values[canonical_name(node.id)]
    if isinstance(node, ast.BinOp):
        op = _BINARY_OPS[type(node.op)]
        return op(_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY_OPS[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.Call):
        args = [_evaluate(a, values) for a in node.args]
        name = node.func.id  # type: ignore[attr-defined]  # checked to be ast.Name
        if name in _UNARY_FUNCS:
            return _UNARY_FUNCS[name](args[0])
        return functools.reduce(_VARIADIC_FUNCS[name], args)
    raise TypeError(f"unchecked node {type(node).__name__}")  # unreachable after _check


def _resolve(
    values: Mapping[str, ArrayLike | float], needed: Iterable[str], text: str
) -> dict[str, np.ndarray]:
    """Float arrays for the ``needed`` canonical names from ``values`` (keys may be aliases).

    Unknown keys are ignored; a property given under two names, or one that is missing, is a
    ValueError naming it.
    """
    resolved: dict[str, np.ndarray] = {}
    given_as: dict[str, str] = {}
    for key, value in values.items():
        if not is_known(key):
            continue
        name = canonical_name(key)
        if name in given_as:
            raise ValueError(f"property {name!r} given twice (as {given_as[name]!r} and {key!r})")
        given_as[name] = key
        resolved[name] = np.asarray(value, dtype=float)
    missing = sorted(set(needed) - set(resolved))
    if missing:
        raise ValueError(
            f"{text!r} needs {', '.join(missing)}; got {', '.join(map(str, values)) or 'nothing'}"
        )
    return resolved


@dataclass(frozen=True)
class Objective:
    """An arithmetic expression over named properties, to maximise or minimise.

    Build with :meth:`parse`; e.g. ``Objective.parse("hardness * toughness")``.

    Attributes:
        text: The expression as given (surrounding whitespace stripped).
        variables: Canonical names of the properties it uses.
    """

    text: str
    variables: frozenset[str]
    _tree: ast.expr = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Objective:
        """Parse and validate an objective expression.

        Raises:
            ValueError: Syntax error, unknown property name, or a construct outside the
                whitelist; the message names the offending piece.
        """
        text, tree = _parse_tree(text, "objective")
        names: set[str] = set()
        _check(tree, text, names)
        return cls(text=text, variables=frozenset(names), _tree=tree)

    def evaluate(self, values: Mapping[str, ArrayLike | float]) -> np.ndarray:
        """Evaluate on property values (arrays broadcast together).

        Args:
            values: Property values keyed by canonical name or alias, in registry units.
                Keys the expression does not use (even unknown ones) are ignored.

        Returns:
            Float array with the broadcast shape of the inputs it uses.

        Raises:
            ValueError: A needed property is missing or given twice.
        """
        resolved = _resolve(values, self.variables, self.text)
        with np.errstate(all="ignore"):
            result = _evaluate(self._tree, resolved)
        shapes = [np.shape(resolved[name]) for name in self.variables]
        return np.broadcast_to(result, np.broadcast_shapes(np.shape(result), *shapes)).astype(float)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Constraint:
    """A comparison between expressions, e.g. ``"K > 100"`` or ``"50 < K < 300"``.

    Attributes:
        text: The constraint as given (surrounding whitespace stripped).
        variables: Canonical names of the properties it uses.
    """

    text: str
    variables: frozenset[str]
    _operands: tuple[ast.expr, ...] = field(repr=False, compare=False)
    _ops: tuple[type[ast.cmpop], ...] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse a comparison with ``<, <=, >, >=``; chains like ``a < K < b`` are allowed.

        Raises:
            ValueError: Not a comparison, ``==``/``!=``/``and``/``or`` used, no property named,
                or an operand that :meth:`Objective.parse` would reject.
        """
        text, tree = _parse_tree(text, "constraint")
        if isinstance(tree, ast.BoolOp):
            raise ValueError(f"constraint {text!r}: use one constraint per string, not and/or")
        if not isinstance(tree, ast.Compare):
            raise ValueError(f"constraint {text!r} is not a comparison (<, <=, >, >=)")
        for op, right in zip(tree.ops, tree.comparators, strict=True):
            if type(op) not in _COMPARE_OPS:
                raise ValueError(
                    f"constraint {text!r}: comparison {type(op).__name__} before "
                    f"{_snippet(text, right)!r} is not allowed; use <, <=, >, >="
                )
        operands = (tree.left, *tree.comparators)
        names: set[str] = set()
        for operand in operands:
            _check(operand, text, names)
        if not names:
            raise ValueError(f"constraint {text!r} names no property")
        return cls(text, frozenset(names), operands, tuple(type(op) for op in tree.ops))

    def satisfied(self, values: Mapping[str, ArrayLike | float]) -> np.ndarray:
        """Boolean array, True where every comparison in the chain holds (NaN never does).

        Args:
            values: Property values keyed by canonical name or alias, in registry units.
        """
        sides = self._sides(values)
        ok = np.asarray(True)
        with np.errstate(all="ignore"):
            for op, left, right in zip(self._ops, sides[:-1], sides[1:], strict=True):
                ok = ok & _COMPARE_OPS[op](left, right)
        return np.broadcast_to(ok, np.broadcast_shapes(*(np.shape(s) for s in sides))).copy()

    def violation(self, values: Mapping[str, ArrayLike | float]) -> np.ndarray:
        """Non-negative amount by which the constraint is broken (0 where satisfied).

        Sums, over the chain, how far each ``left < right`` pair is from holding (strict and
        non-strict treated alike); inf where a side is NaN. Useful as a penalty.
        """
        sides = self._sides(values)
        total = np.asarray(0.0)
        with np.errstate(all="ignore"):
            for op, left, right in zip(self._ops, sides[:-1], sides[1:], strict=True):
                gap = left - right if op in (ast.Lt, ast.LtE) else right - left
                total = total + np.where(np.isnan(gap), np.inf, np.maximum(gap, 0.0))
        return np.broadcast_to(total, np.broadcast_shapes(*(np.shape(s) for s in sides))).copy()

    def _sides(self, values: Mapping[str, ArrayLike | float]) -> list[np.ndarray]:
        resolved = _resolve(values, self.variables, self.text)
        with np.errstate(all="ignore"):
            return [np.asarray(_evaluate(node, resolved), dtype=float) for node in self._operands]

    def __str__(self) -> str:
        return self.text


def parse_constraints(texts: Iterable[str] | str | None) -> list[Constraint]:
    """Parse several constraints; ``None`` gives ``[]`` and a single string one constraint.

    Raises:
        ValueError: The first constraint that fails, with its position in the list.
    """
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    constraints = []
    for i, text in enumerate(texts):
        try:
            constraints.append(Constraint.parse(text))
        except ValueError as exc:
            raise ValueError(f"constraint #{i}: {exc}") from None
    return constraints
