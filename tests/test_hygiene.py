"""Test hygiene, checked mechanically over tests/*.py (AST, no imports of the files scanned).

(a) every test function asserts something: an ``assert`` statement, ``pytest.raises`` /
    ``pytest.warns``, a call whose name starts with ``assert``/``_assert`` (``np.testing.
    assert_allclose``, ``mock.assert_called_once``, a local ``_assert_same``), or a call to a
    function defined in the same file that (transitively) does one of these;
(b) no ``importorskip`` of the project's own modules (``benchmark...``, ``methods...``): an
    import error in the project must fail, not skip;
(c) no wall-clock limit: no ``assert`` comparing a ``time.perf_counter()`` / ``time.time()`` /
    ``time.monotonic()`` difference (or a name assigned from one) against a constant. Timing
    targets live in scripts/bench_*.py, measured against a baseline in the same run.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
OWN_PACKAGES = ("benchmark", "methods")
CLOCKS = {"perf_counter", "time", "monotonic", "perf_counter_ns", "monotonic_ns", "time_ns"}


def _call_name(node: ast.AST) -> str:
    """The last name of a call's function: ``a.b.assert_x(...)`` -> ``assert_x``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _direct_check(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in ("raises", "warns", "fail") or name.startswith(("assert", "_assert")):
                return True
    return False


def _functions(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level functions and methods of module-level classes, by bare name."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.setdefault(item.name, item)
    return out


def _tests(tree: ast.Module) -> list[ast.AST]:
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            found.append(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found += [i for i in node.body
                      if isinstance(i, ast.FunctionDef | ast.AsyncFunctionDef) and i.name.startswith("test")]
    return found


def assertion_free(tree: ast.Module) -> list[str]:
    """(a): names of test functions that check nothing."""
    funcs = _functions(tree)
    checking = {name for name, fn in funcs.items() if _direct_check(fn)}
    changed = True
    while changed:                      # helpers calling helpers that assert
        changed = False
        for name, fn in funcs.items():
            if name not in checking and any(_call_name(n) in checking for n in ast.walk(fn)
                                            if isinstance(n, ast.Call)):
                checking.add(name)
                changed = True
    return [fn.name for fn in _tests(tree) if fn.name not in checking]


def own_importorskips(tree: ast.Module) -> list[str]:
    """(b): the project modules passed to importorskip."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "importorskip" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and arg.value.split(".")[0] in OWN_PACKAGES:
                out.append(arg.value)
    return out


def _is_clock(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or _call_name(node) not in CLOCKS:
        return False
    func = node.func
    return isinstance(func, ast.Name) or (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                                          and func.value.id == "time")


def _is_clock_diff(node: ast.AST, diff_names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in diff_names
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)
            and (_is_clock(node.left) or _is_clock(node.right)))


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
        and not isinstance(node.value, bool)


def wall_clock_limits(tree: ast.Module) -> list[int]:
    """(c): line numbers of asserts bounding an elapsed wall-clock time by a constant."""
    lines = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        diff_names = {t.id for n in ast.walk(fn) if isinstance(n, ast.Assign) and _is_clock_diff(n.value, set())
                      for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(fn):
            if not isinstance(node, ast.Assert):
                continue
            for cmp in ast.walk(node.test):
                if isinstance(cmp, ast.Compare):
                    sides = [cmp.left, *cmp.comparators]
                    if any(_is_clock_diff(s, diff_names) for s in sides) and any(_is_number(s) for s in sides):
                        lines.append(node.lineno)
                        break
    return sorted(set(lines))


def scan(source: str, filename: str = "<test>") -> list[str]:
    tree = ast.parse(source, filename)
    return ([f"{filename}::{name}: no assertion" for name in assertion_free(tree)]
            + [f"{filename}: importorskip({mod!r}) of the project's own module" for mod in own_importorskips(tree)]
            + [f"{filename}:{line}: wall-clock limit in a unit test" for line in wall_clock_limits(tree)])


def test_every_test_file_is_clean():
    findings = []
    for path in sorted(TESTS.glob("test_*.py")):
        findings += scan(path.read_text(), path.name)
    assert findings == []


def test_the_scan_finds_each_kind_of_problem():
    bad = '''
import time, pytest
from time import perf_counter

def _check(x):
    assert x

def _indirect(x):
    _check(x)

def test_nothing():
    print("ran")

def test_via_helper():
    _indirect(1)

def test_mock():
    m.assert_called_once()

def test_raises():
    with pytest.raises(ValueError):
        int("x")

class TestGroup:
    def test_silent(self):
        pass

def test_skip_own():
    pytest.importorskip("benchmark.data.simulator")
    pytest.importorskip("ray")
    assert True

def test_slow():
    t0 = time.perf_counter()
    assert time.perf_counter() - t0 < 5            # limit
    t1 = perf_counter()
    took = perf_counter() - t1
    assert took < 30                               # limit
    assert not False and time.time() - t0 <= 60  # limit
    assert time.perf_counter() - t0 > t1 - t0      # a ratio of two measurements: allowed
'''
    tree = ast.parse(bad)
    assert assertion_free(tree) == ["test_nothing", "test_silent"]
    assert own_importorskips(tree) == ["benchmark.data.simulator"]
    limits = [i for i, line in enumerate(bad.splitlines(), 1) if line.endswith("# limit")]
    assert len(limits) == 3 and wall_clock_limits(tree) == limits
