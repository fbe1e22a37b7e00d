"""Runs every device test on both runtimes.

A device test module (tests/device/test_*.py) holds plain `test_*()` functions
written in the MicroPython/CPython common subset. Each function becomes two
pytest items: `[cpython]` runs in this process, `[micropython]` runs in a fresh
MicroPython VM capped at 256 KiB heap (a module may set `MP_HEAP = "128k"`).
"""
from __future__ import annotations

import ast
import importlib
import os
import sys
import traceback
from pathlib import Path

import pytest

from host_tools import mpvm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RUNTIMES = ("cpython", "micropython")


def pytest_pycollect_makemodule(module_path, parent):
    if module_path.parent == HERE and module_path.name.startswith("test_"):
        return DeviceModule.from_parent(parent, path=module_path)
    return None


class DeviceModule(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), str(self.path))
        heap = mpvm.DEFAULT_HEAP
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MP_HEAP" for t in node.targets
            ):
                heap = ast.literal_eval(node.value)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for runtime in RUNTIMES:
                    yield DeviceItem.from_parent(
                        self, name=f"{node.name}[{runtime}]", func=node.name, runtime=runtime, heap=heap
                    )


class DeviceFailure(Exception):
    pass


class DeviceItem(pytest.Item):
    def __init__(self, *, func: str, runtime: str, heap: str, **kw):
        super().__init__(**kw)
        self.func = func
        self.runtime = runtime
        self.heap = heap
        self.add_marker(getattr(pytest.mark, runtime))

    def _tmp(self) -> Path:
        tmp = self.config._tmp_path_factory.mktemp(f"{self.func}-{self.runtime}"[:60])  # type: ignore[attr-defined]
        return tmp

    def runtest(self):
        tmp = self._tmp()
        env = {"MEDSENTRY_TEST_TMP": str(tmp), "MEDSENTRY_DEVICE_TESTS": str(HERE)}
        modname = self.path.stem
        if self.runtime == "cpython":
            self._run_cpython(modname, env)
        else:
            self._run_micropython(modname, env)

    def _run_cpython(self, modname: str, env: dict[str, str]):
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        for p in (str(REPO), str(HERE)):
            if p not in sys.path:
                sys.path.insert(0, p)
        try:
            devtest = importlib.import_module("devtest")
            mod = importlib.import_module(modname)
            try:
                getattr(mod, self.func)()
            except devtest.SkipTest as e:
                pytest.skip(str(e))
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _run_micropython(self, modname: str, env: dict[str, str]):
        proc = mpvm.run_script(
            HERE / "mp_runner.py",
            modname,
            self.func,
            paths=[HERE, REPO],
            heap=self.heap,
            timeout=float(os.environ.get("MEDSENTRY_DEVICE_TEST_TIMEOUT", "240")),
            env=env,
            cwd=REPO,
        )
        out = proc.stdout + proc.stderr
        lines = [l for l in out.splitlines() if l.startswith("@@MSTEST")]
        if lines and lines[-1].startswith("@@MSTEST PASS") and proc.returncode == 0:
            return
        if lines and lines[-1].startswith("@@MSTEST SKIP"):
            pytest.skip(lines[-1][len("@@MSTEST SKIP"):].strip())
        raise DeviceFailure(f"on MicroPython (heap {self.heap}), exit {proc.returncode}:\n{out}")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, DeviceFailure):
            return str(excinfo.value)
        # On CPython: the traceback from the test function down, without pytest's frames.
        tb = excinfo.value.__traceback__
        here = Path(__file__).resolve()
        start = tb
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).resolve() == here:
                start = tb.tb_next
            tb = tb.tb_next
        tb = start
        return "on CPython:\n" + "".join(traceback.format_exception(type(excinfo.value), excinfo.value, tb))

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"
