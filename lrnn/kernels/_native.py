"""lrnn's compiled CPU kernels (csrc/), built on first use and cached.

`StepWeightLSTMLayer` runs its CPU float32/float64 loops through these ops when they are available: the same
products as the Python loops (float32's forward products, small aligned weight gradients and the state and input
gradients of sets over 2 MB by lrnn's AVX2 kernels, small_gemm.h, with AVX-512 versions where the CPU has it), but
the per-step gate arithmetic is one vectorised pass and the step loops run without Python (see
step_weight_lstm.cpp); `LinearNLL` (lrnn/rnnlm.py) does its softmax and its gradient as one pass per row
(linear_nll.cpp), and with AVX-512 its two decoder products in those kernels. They are compiled once per machine
and torch version with torch.utils.cpp_extension (a C++ compiler is needed; ~15 s, announced on stderr) into
torch's extension cache (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), then loaded in ~0.1 s.
Where no compiler is found or the build fails, lrnn warns once and keeps to the Python loops and torch ops (same
results, slower). ``LRNN_NATIVE=0`` turns the kernels off.

The build's name hashes the sources, the flags and the build environment (torch's and Python's include folders,
the sources' folder, the compiler): each checkout / venv gets a build folder of its own. torch's ninja build file
holds those absolute paths, so two checkouts sharing one folder would rebuild it every time the other loaded it.
Every build, a first one or a ninja rebuild, is announced on stderr.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = sorted(CSRC.glob("*.cpp"))  # step_weight_lstm.cpp (+ small_gemm.h), linear_nll.cpp; both use fast_exp.h
_state: dict[str, object] = {}


def _cflags(openmp: bool) -> list[str]:
    # -fno-trapping-math lets GCC vectorise the float -> int conversion in exp_f (no FP exceptions are used).
    flags = ["-O3", "-fno-trapping-math"]
    if platform.machine() in ("x86_64", "AMD64") and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags + (["-fopenmp"] if openmp else [])


def _openmp() -> bool:
    # The kernels split rows over torch's threads with at::parallel_for, whose OpenMP version is compiled into the
    # caller: build with -fopenmp where torch itself runs on OpenMP (Linux wheels; the extension then uses the
    # libgomp torch has loaded, one thread pool). Elsewhere, or where that build fails, those passes run on one
    # thread.
    return sys.platform.startswith("linux") and torch.backends.openmp.is_available()


def extension_name(flags: list[str]) -> str:
    """``lrnn_kernels_<hash>`` of the sources, the flags, torch's version and the build environment: the absolute
    paths that torch writes into the build's ninja file (torch's and Python's include folders, the sources) and the
    compiler, so that another checkout or venv never shares (and rebuilds) this build."""
    from torch.utils import cpp_extension

    text = "".join(p.read_text() for p in [*SOURCES, *sorted(CSRC.glob("*.h"))])
    environment = [
        *cpp_extension.include_paths(), sysconfig.get_paths().get("include", ""), str(CSRC.resolve()),
        os.environ.get("CXX", "c++"),
    ]  # fmt: skip
    key = "\n".join([text, " ".join(flags), torch.__version__, *environment])
    return f"lrnn_kernels_{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _library_mtime(name: str) -> float | None:
    from torch.utils import cpp_extension

    try:
        return os.stat(os.path.join(cpp_extension._get_build_directory(name, False), f"{name}.so")).st_mtime_ns
    except Exception:
        return None


def _build(openmp: bool) -> object:
    from torch.utils import cpp_extension

    flags = _cflags(openmp)
    name = extension_name(flags)
    before = _library_mtime(name)
    if before is None:  # say so when this call compiles (the first in this environment) rather than loads: ~15 s
        print("lrnn: compiling the CPU kernels for this environment (once, ~15 s) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # torch.utils.cpp_extension runs `ninja` from PATH: put the venv's (pip's ninja package) on it for the build
    # only, so that it is found without an activated venv; the process's PATH is restored afterwards.
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + path
    try:
        cpp_extension.load(
            name=name,
            sources=[str(p) for p in SOURCES],
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"] if openmp else [],
            is_python_module=False,
        )
    finally:
        os.environ["PATH"] = path
    if before is not None and _library_mtime(name) != before:  # ninja found something out of date and rebuilt
        print(
            f"lrnn: rebuilt the CPU kernels ({time.perf_counter() - t0:.0f} s; their sources or build folder "
            f"changed): {cpp_extension._get_build_directory(name, False)}",
            file=sys.stderr,
            flush=True,
        )
    return torch.ops.lrnn


def ops() -> object | None:
    """torch.ops.lrnn with the compiled kernels, or None (LRNN_NATIVE=0, or the build failed: warned once)."""
    if "ops" not in _state:
        if os.environ.get("LRNN_NATIVE", "1") == "0":
            _state["ops"] = None
        else:
            try:
                try:
                    _state["ops"] = _build(_openmp())
                except Exception:
                    if not _openmp():
                        raise
                    _state["ops"] = _build(False)  # e.g. no OpenMP support in this compiler: one-thread passes
            except Exception as e:  # no compiler, no ninja, a read-only cache, ...: keep to the Python loops
                msg = " ".join(str(e).split())  # a build error is the command line, then the compiler's complaint
                msg = msg if len(msg) <= 400 else f"{msg[:120]} ... {msg[-260:]}"
                warnings.warn(
                    f"lrnn: could not build the CPU kernels ({type(e).__name__}: {msg}); "
                    "lrnn runs the same math as Python loops and torch ops instead (same results, slower). "
                    "LRNN_NATIVE=0 silences this.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _state["ops"] = None
    return _state["ops"]
