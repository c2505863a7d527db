"""Every claim the README ticks names a test, and that test exists.

The README's comparison table marks mutnas's claims with the test that proves each one
(``yes (`test_zoo.py`)``). A renamed or deleted test would leave the claim standing with
nothing behind it; this test reads the table and finds each named file, folder or test
function in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_CODE = re.compile(r"`([\w./]+)`")  # names of tests, files, folders, modules (not code)


def comparison_rows() -> list[tuple[str, str]]:
    """(claim, mutnas cell) of each row of the "How it compares" table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## How it compares", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[0]) <= {"-", " "} or cells[1] == "mutnas":
            continue
        rows.append((cells[0], cells[1]))
    return rows


def _test_functions() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
    return names


def _exists(reference: str, functions: set[str]) -> bool:
    """A test file (by name), a folder or file of the repository, a test, or a module."""
    if reference.endswith(".py") and "/" not in reference:
        return any((ROOT / "tests").rglob(reference))
    if "/" in reference:
        return (ROOT / reference).exists()
    if reference.startswith("test_"):
        return reference in functions
    module = ROOT.joinpath(*reference.split("."))
    return module.with_suffix(".py").exists() or (module / "__init__.py").exists()


ROWS = comparison_rows()


def test_the_table_is_found():
    assert len(ROWS) >= 10, ROWS


@pytest.mark.parametrize(("claim", "cell"), ROWS, ids=[r[0][:40] for r in ROWS])
def test_each_ticked_claim_names_tests_that_exist(claim, cell):
    if cell.startswith(("PyTorch", "–")):  # the framework row, or no claim
        return
    references = _CODE.findall(cell)
    assert references, f"the claim {claim!r} names no test: {cell!r}"
    functions = _test_functions()
    missing = [r for r in references if not _exists(r, functions)]
    assert not missing, f"{claim!r} names tests that do not exist: {missing}"


def test_a_missing_reference_is_caught():
    functions = _test_functions()
    assert _exists("test_zoo.py", functions) and _exists(
        "tests/unit/mutnas_torch/energy/", functions
    )
    assert _exists("test_optimizer_state_is_reindexed_with_the_parameters", functions)
    assert _exists("mutnas.testing.strategies", functions)
    for bad in ("test_nonexistent.py", "tests/unit/nowhere/", "test_no_such_test", "mutnas.nope"):
        assert not _exists(bad, functions), bad
