"""``import frugalvision`` and ``frugalvision --help`` start without the heavy dependencies (they are imported where
used); their times are measured by ``frugalvision bench startup``, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from frugalvision.bench import TARGETS

HEAVY = ("timm", "torchvision", "numba", "onnx", "onnxruntime", "matplotlib", "tensorboard", "openvino")

_REPORT = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))"


def _imported_heavy_modules(repo_root, code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    script = f"{code}\n" + _REPORT.format(heavy=set(heavy))
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --help exits 0 (SystemExit): anything else (an unknown command, a parser error) fails the child
_HELP = ("from frugalvision.cli.main import main\ntry:\n    main({argv!r})\n"
         "except SystemExit as end:\n    assert not end.code, end.code")


@pytest.mark.parametrize("code", [
    "import frugalvision",
    _HELP.format(argv=["--help"]),
    _HELP.format(argv=["train", "--help"]),
    _HELP.format(argv=["quantize", "--help"]),
])
def test_start_imports_no_heavy_dependency(repo_root, code):
    assert _imported_heavy_modules(repo_root, code) == []


@pytest.mark.parametrize("target", [None, *(t.name for t in TARGETS)])
def test_bench_help_imports_no_torch(repo_root, target):
    """``frugalvision bench --help`` and ``bench TARGET --help`` of every target load neither torch nor numpy (each
    target declares its options import-light and imports the library where it runs)."""
    argv = ["bench", *([target] if target else []), "--help"]
    assert _imported_heavy_modules(repo_root, _HELP.format(argv=argv), (*HEAVY, "torch", "numpy")) == []


def test_the_check_sees_a_heavy_import(repo_root):
    """The probe itself works: a module that does import numba is reported."""
    assert "numba" in _imported_heavy_modules(repo_root, "import frugalvision.ops.cpu.adder_numba")


def test_help_does_not_import_torch(repo_root):
    script = _HELP.format(argv=["eval", "--help"]) + "\nimport sys; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_public_names_load_on_first_use(repo_root):
    code = ("import frugalvision as fv, torch\n"
            "model = fv.create_model('lenet5_bn')\n"
            "assert fv.count_ops(model, (1, 28, 28))['params'] == sum(p.numel() for p in model.parameters())\n"
            "assert callable(fv.quantize) and callable(fv.load_model) and fv.ops.adder2d and fv.layers.Adder2d\n"
            "assert 'numba' in fv.ops.available_backends('adder2d')")
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
