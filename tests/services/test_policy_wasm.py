"""The lean OPA Wasm runner: answers, traps, host builtins, big inputs and threads.

Small Rego fixtures are compiled with the project's OPA binary (``deploy/opa.sh install``,
which ``make test`` runs), so this runs with the integration tests.
"""

from __future__ import annotations

import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.policy_opa import REPO_ROOT
from services.policy_wasm import OpaWasmModule, WasmEvalError

pytestmark = pytest.mark.integration

OPA = REPO_ROOT / "deploy" / ".state" / "bin" / "opa"

REGO = """package t

import rego.v1

echo := {"x": input.x, "n": count(input.items), "limit": data.limit}

conflict := input.a

conflict := input.b

clock := time.now_ns()
"""


def _compile(tmp: Path, *entrypoints: str) -> bytes:
    (tmp / "t.rego").write_text(REGO)
    args = [str(OPA), "build", "-t", "wasm", "-o", str(tmp / "b.tar.gz")]
    for e in entrypoints:
        args += ["-e", e]
    subprocess.run([*args, "t.rego"], cwd=tmp, check=True, capture_output=True)
    with tarfile.open(tmp / "b.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("/") == "policy.wasm")
        fh = tar.extractfile(member)
        assert fh is not None
        return fh.read()


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> OpaWasmModule:
    wasm = _compile(tmp_path_factory.mktemp("rego"), "t/echo", "t/conflict")
    return OpaWasmModule(wasm, {"limit": 7})


def test_evaluates_with_input_and_data(module: OpaWasmModule) -> None:
    assert module.evaluate("t/echo", {"x": "a", "items": [1, 2, 3]}) == {
        "x": "a",
        "n": 3,
        "limit": 7,
    }
    # scratch from one evaluation does not leak into the next
    assert module.evaluate("t/echo", {"x": 2.5, "items": []}) == {"x": 2.5, "n": 0, "limit": 7}


def test_undefined_is_an_error(module: OpaWasmModule) -> None:
    with pytest.raises(WasmEvalError, match="undefined"):
        module.evaluate("t/echo", {"x": 1})  # count(input.items) is undefined


def test_trap_raises_and_the_next_evaluation_works(module: OpaWasmModule) -> None:
    with pytest.raises(WasmEvalError, match=r"policy aborted: .*var assignment conflict"):
        module.evaluate("t/conflict", {"a": 1, "b": 2})
    assert module.evaluate("t/conflict", {"a": 1, "b": 1}) == 1
    assert module.evaluate("t/echo", {"x": 0, "items": [0]})["n"] == 1


def test_unknown_entrypoint(module: OpaWasmModule) -> None:
    with pytest.raises(KeyError):
        module.evaluate("t/nothing", {})


def test_input_larger_than_memory_grows_it(module: OpaWasmModule) -> None:
    items = [f"item-{i:07d}" for i in range(200_000)]  # ~3 MB of JSON
    assert module.evaluate("t/echo", {"x": "big", "items": items})["n"] == len(items)
    assert module.evaluate("t/echo", {"x": "small", "items": [1]})["n"] == 1


def test_threads_get_the_same_answers(module: OpaWasmModule) -> None:
    inputs = [{"x": i, "items": list(range(i % 17))} for i in range(400)]
    expected = [module.evaluate("t/echo", x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: module.evaluate("t/echo", x), inputs))
    assert got == expected


def test_a_module_needing_host_builtins_is_refused(tmp_path: Path) -> None:
    wasm = _compile(tmp_path, "t/clock")
    with pytest.raises(WasmEvalError, match="builtins"):
        OpaWasmModule(wasm, {})
