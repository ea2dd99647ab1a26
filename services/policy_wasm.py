"""A lean runner for OPA-compiled Wasm policies (OPA Wasm ABI 1.2+, ``opa_eval``), on wasmtime.

One evaluation is one call into the module: the input JSON is written at the heap base left
after the data document was loaded, and ``opa_eval`` parses it, evaluates the entrypoint and
returns the address of the NUL-terminated JSON result set. Nothing survives an evaluation:
the next one passes the same heap base, so the scratch of the last is simply reused.

Calls go through wasmtime's C API with a prebuilt argument array. wasmtime-py's generic
``Func.__call__`` rebuilds the function type and converts every argument on each call, which
cost ~90 µs of the ~100 µs per decision measured with the general-purpose SDK; the policy
itself runs in a few microseconds.

A module instance is not thread-safe, so each thread gets its own (the compiled module is
shared). The policies use no host builtins; a module that needs one is refused at load rather
than failing on first use. A trap (including ``opa_abort``) raises :class:`WasmEvalError` and
the thread's instance is rebuilt before its next use.
"""

from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi  # the C API; wasmtime is pinned in pyproject.toml
from wasmtime import _func as wasm_func

_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_PAGE = 65536


class WasmEvalError(RuntimeError):
    """The module trapped, aborted or answered something that is not a result set."""


class _I32Call:
    """A wasm function of i32 parameters returning one i32, called through the C API with
    an argument array allocated once."""

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, arity: int) -> None:
        self._store = store
        self._func = func._func
        self._arity = arity
        self._params = (ffi.wasmtime_val_t * max(arity, 1))()
        for p in self._params:
            p.kind = ffi.WASMTIME_I32
        self._results = (ffi.wasmtime_val_t * 1)()

    def __call__(self, *args: int) -> int:
        for i, a in enumerate(args):
            self._params[i].of.i32 = a
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_func_call(
            self._store._context(),
            ctypes.byref(self._func),
            self._params,
            self._arity,
            self._results,
            1,
            ctypes.byref(trap),
        )
        if error or trap:
            # wasmtime-py builds (and frees) the trap or error; an exception raised by one of
            # our host functions is parked by wasmtime-py and must be taken here, or it would
            # surface from some later, unrelated call.
            what = (
                f"policy trapped: {wasmtime.Trap._from_ptr(trap).message}"
                if trap
                else f"policy call failed: {wasmtime.WasmtimeError._from_ptr(error)}"
            )
            try:
                wasm_func.maybe_raise_last_exn()
            except WasmEvalError:
                raise
            except Exception as exc:
                raise WasmEvalError(f"{what}: {exc}") from exc
            raise WasmEvalError(what)
        return int(self._results[0].of.i32)


class _Instance:
    """One store + memory + instance, with the data document loaded."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module, data: bytes) -> None:
        self.store = wasmtime.Store(engine)
        memory_type = next(
            i.type for i in module.imports if isinstance(i.type, wasmtime.MemoryType)
        )
        self.memory = wasmtime.Memory(self.store, memory_type)
        linker = wasmtime.Linker(engine)
        linker.define(self.store, "env", "memory", self.memory)
        i32 = wasmtime.ValType.i32()

        def abort(addr: int) -> None:
            raise WasmEvalError(
                f"policy aborted: {self.cstring(addr)[:200].decode(errors='replace')}"
            )

        def no_builtin(*args: int) -> int:
            raise WasmEvalError(f"policy called host builtin id {args[0]}, none is provided")

        linker.define_func("env", "opa_abort", wasmtime.FuncType([i32], []), abort)
        linker.define_func("env", "opa_println", wasmtime.FuncType([i32], []), lambda _addr: None)
        for n in range(5):
            linker.define_func(
                "env", f"opa_builtin{n}", wasmtime.FuncType([i32] * (n + 2), [i32]), no_builtin
            )
        exports = linker.instantiate(self.store, module).exports(self.store)

        def call(name: str, arity: int) -> _I32Call:
            func = exports[name]
            if not isinstance(func, wasmtime.Func):
                raise WasmEvalError(f"module export {name!r} is not a function")
            return _I32Call(self.store, func, arity)

        malloc = call("opa_malloc", 1)
        json_parse = call("opa_json_parse", 2)
        json_dump = call("opa_json_dump", 1)
        self._eval = call("opa_eval", 7)
        needed = json.loads(self.cstring(json_dump(call("builtins", 0)())))
        if needed:
            raise WasmEvalError(f"policy needs host builtins {sorted(needed)}; none is provided")
        self.entrypoints: dict[str, int] = json.loads(
            self.cstring(json_dump(call("entrypoints", 0)()))
        )
        addr = malloc(len(data))
        self.write(addr, data)
        self.data_addr = json_parse(addr, len(data))
        if self.data_addr == 0:
            raise WasmEvalError("the policy data document is not valid JSON")
        self.heap = call("opa_heap_ptr_get", 0)()

    def write(self, addr: int, raw: bytes) -> None:
        short = addr + len(raw) + _PAGE - self.memory.data_len(self.store)
        if short > 0:
            self.memory.grow(self.store, -(-short // _PAGE))
        self.memory.write(self.store, raw, addr)

    def cstring(self, addr: int) -> bytes:
        base = ctypes.addressof(self.memory.data_ptr(self.store).contents)
        return ctypes.string_at(base + addr)

    def evaluate(self, entrypoint: int, raw_input: bytes) -> bytes:
        self.write(self.heap, raw_input)
        n = len(raw_input)
        result = self._eval(0, entrypoint, self.data_addr, self.heap, n, self.heap + n, 0)
        return self.cstring(result)


class OpaWasmModule:
    """An OPA-compiled Wasm policy with its data document, evaluated in-process."""

    def __init__(self, wasm: bytes, data: Any) -> None:
        self._engine = wasmtime.Engine()
        self._module = wasmtime.Module(self._engine, wasm)
        self._data = _ENCODE(data).encode()
        self._local = threading.local()
        self.entrypoints = self._instance().entrypoints  # validates the module up front

    @classmethod
    def from_file(cls, path: Path, data: Any) -> OpaWasmModule:
        return cls(Path(path).read_bytes(), data)

    def _instance(self) -> _Instance:
        inst: _Instance | None = getattr(self._local, "instance", None)
        if inst is None:
            inst = _Instance(self._engine, self._module, self._data)
            self._local.instance = inst
        return inst

    def evaluate(self, entrypoint: str, input_value: Any) -> Any:
        """The entrypoint's value for ``input_value``; raises :class:`WasmEvalError` when it
        is undefined or the module fails, and ``KeyError`` for an unknown entrypoint."""
        inst = self._instance()
        raw = _ENCODE(input_value).encode()
        try:
            out = inst.evaluate(inst.entrypoints[entrypoint], raw)
        except WasmEvalError:
            self._local.instance = None  # a trapped instance is not reused
            raise
        result_set = json.loads(out)
        if not isinstance(result_set, list) or not result_set:
            raise WasmEvalError(f"{entrypoint} is undefined for this input")
        return result_set[0]["result"]
