"""The docstrings the API reference site renders (mkdocstrings, Markdown).

A Sphinx role such as ``:class:`X` `` shows up on the site as literal text; a link is
written the autorefs way, ``[``X``][durable_jobs.module.X]``, which ``make docs``
(strict) refuses when it does not resolve.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "durable_jobs"

# ``:class:`X` ``, ``:py:meth:`X` ``, ``:exc:`~a.X` ``... (not ``module:attr``).
SPHINX_ROLE = re.compile(r"(?<![\w:]):(?:[a-z]+:)?[a-z]+:`")
CROSS_REFERENCE = re.compile(r"\]\[(durable_jobs(?:\.\w+)+)\]")


def docstrings() -> Iterator[tuple[str, str]]:
    """Every docstring under durable_jobs/ (module, class, function and attribute
    docstrings: any statement that is a bare string), with where it starts."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                yield where, node.value.value


def test_the_scan_sees_the_docstrings() -> None:
    found = dict(docstrings())
    assert len(found) > 100
    assert any(text.startswith("The errors durable-jobs raises") for text in found.values())


def test_no_docstring_uses_a_sphinx_role() -> None:
    offenders = [
        f"{where}: {match.group()}"
        for where, text in docstrings()
        for match in SPHINX_ROLE.finditer(text)
    ]
    assert not offenders, (
        "Sphinx roles render as literal text on the mkdocs site; write "
        "[``Name``][durable_jobs.module.Name] (or plain ``Name`` in modules not on "
        f"the site): {offenders}"
    )


@pytest.mark.parametrize(
    "text",
    [":class:`Foo`", "a :meth:`Foo.bar` b", ":py:func:`f`", ":exc:`~a.b.Error`"],
)
def test_the_role_pattern_catches(text: str) -> None:
    assert SPHINX_ROLE.search(text)


@pytest.mark.parametrize("text", ["``module:attr``", "``a:b``", "[``X``][durable_jobs.X]"])
def test_the_role_pattern_spares(text: str) -> None:
    assert not SPHINX_ROLE.search(text)


def resolves(identifier: str) -> bool:
    """Whether ``identifier`` names a module, or an object reached from one."""
    parts = identifier.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            owner = target
            target = getattr(owner, name, None)
            if target is None:
                # An attribute that is only annotated (no class-level value).
                return (
                    name == parts[-1]
                    and isinstance(owner, type)
                    and any(name in vars(k).get("__annotations__", {}) for k in owner.__mro__)
                )
        return True
    return False


def test_cross_references_name_real_objects() -> None:
    references = [
        (where, match.group(1))
        for where, text in docstrings()
        for match in CROSS_REFERENCE.finditer(text)
    ]
    assert references  # the pattern still matches how they are written
    broken = [
        f"{where}: {identifier}" for where, identifier in references if not resolves(identifier)
    ]
    assert not broken, f"cross-references to nothing: {broken}"
