"""lrnn's compiled CPU kernels (lrnn/kernels/_native.py, csrc/step_weight_lstm.cpp) against the Python loops."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator

import pytest
import torch

from lrnn.cores.time_varying import TimeVaryingLSTM
from lrnn.cores.untied import UntiedLSTM
from lrnn.kernels import _native, step_weight

F64 = torch.float64


@pytest.fixture(scope="module")
def ops():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine: lrnn runs the Python loops (tested everywhere else)")
    got = _native.ops()
    assert got is not None, "the CPU kernels did not build although a compiler is present (see the warning)"
    return got


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's thread count is n within the block."""
    was = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(was)


@contextlib.contextmanager
def switched(switch: Callable[[bool], bool], on: bool) -> Iterator[None]:
    """One of the kernels' switches (ops.use_small_products, ops.split_run_products: they return the old setting) is
    `on` within the block."""
    was = switch(on)
    try:
        yield
    finally:
        switch(was)


def outputs_and_grads(core, x, hx, native: bool, monkeypatch, offset: int = 0) -> list[torch.Tensor]:
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", native)
    core.zero_grad(set_to_none=True)
    inputs = [t for t in [x, *(hx or [])] if t.requires_grad]
    torch.manual_seed(3)
    out, (h, c) = core(x, hx, offset=offset)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + h.sin().sum() + (c * c).sum()
    grads = torch.autograd.grad(loss, inputs + list(core.parameters()), allow_unused=True)
    return [out, h, c] + [torch.zeros(()) if g is None else g for g in grads]


CASES = {  # name: (UntiedLSTM kwargs, T, offset)
    "untied": (dict(max_len=7), 7, 0),
    "offset": (dict(max_len=9), 5, 3),
    "share3-runs": (dict(max_len=9, share_every=3), 8, 1),  # runs inside the Function (fused runs off below)
    "cycle": (dict(max_len=4, extrapolation="cycle"), 11, 2),  # sets used by several segments: accumulated
    "clamp": (dict(max_len=4, extrapolation="clamp"), 8, 0),  # one long run after a diagonal
    "no-bias": (dict(max_len=6, bias=False), 6, 0),
    "batch-first-dropout": (dict(max_len=6, batch_first=True, dropout=0.3), 6, 0),
}


def initial_state(kind: str, B: int, H: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """ "random": h0, c0 that need gradients; "none": hx=None (zeros: the kernels skip step 0's products with h0);
    "zeros": zeros that need gradients (the products are skipped, h0's gradient is not)."""
    if kind == "none":
        return None
    make = torch.randn if kind == "random" else torch.zeros
    return tuple(make(2, B, H, dtype=dtype, requires_grad=True) for _ in range(2))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("state", ["random", "none", "zeros"])
@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (torch.float32, 2e-5)])
def test_kernels_match_the_python_loops(ops, case, state, dtype, atol, monkeypatch):
    """Outputs, state and every gradient (input, h0, c0, all weight sets and biases) agree with the Python loops:
    to 1e-12 in float64 (the kernels use the library exp/tanh there) and to float32 precision (their own exp)."""
    kwargs, T, offset = CASES[case]
    monkeypatch.setattr(step_weight, "FUSE_SHARED_RUNS", False)
    torch.manual_seed(0)
    core = UntiedLSTM(3, 5, 2, **kwargs).to(dtype)
    B = 4
    x = torch.randn(B, T, 3, dtype=dtype) if core.batch_first else torch.randn(T, B, 3, dtype=dtype)
    x.requires_grad_()
    hx = initial_state(state, B, 5, dtype)
    native = outputs_and_grads(core, x, hx, True, monkeypatch, offset)
    python = outputs_and_grads(core, x, hx, False, monkeypatch, offset)
    for a, b in zip(native, python, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=atol)


def test_kernels_without_input_grad_or_state(ops, monkeypatch):
    """x that needs no gradient (an embedding output under no_grad) and hx=None: the same as the Python loops."""
    torch.manual_seed(1)
    core = UntiedLSTM(4, 6, 1, max_len=5).to(F64)
    x = torch.randn(5, 2, 4, dtype=F64)
    native = outputs_and_grads(core, x, None, True, monkeypatch)
    python = outputs_and_grads(core, x, None, False, monkeypatch)
    for a, b in zip(native, python, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_large_weight_sets_match_the_python_loops(ops, monkeypatch):
    """Weight sets over 2 MB (H 400): the state and input gradients come from the nn kernel (small_gemm.h), the
    forward products from nt; the same values as the Python loops and as torch's products (float32), in other bits
    than torch's products (the kernels ran)."""
    torch.manual_seed(6)
    core = UntiedLSTM(400, 400, 1, max_len=3)
    x = torch.randn(3, 4, 400, requires_grad=True)
    hx = initial_state("random", 4, 400, torch.float32)
    hx = (hx[0][:1].detach().requires_grad_(), hx[1][:1].detach().requires_grad_())
    native = outputs_and_grads(core, x, hx, True, monkeypatch)
    with switched(ops.use_small_products, False):
        torch_products = outputs_and_grads(core, x, hx, True, monkeypatch)
    python = outputs_and_grads(core, x, hx, False, monkeypatch)
    for a, b, c in zip(native, torch_products, python, strict=True):
        torch.testing.assert_close(a, c, atol=5e-5, rtol=5e-5)
        torch.testing.assert_close(b, c, atol=5e-5, rtol=5e-5)
    if ops.small_products_compiled():
        assert not torch.equal(native[3], torch_products[3])  # dx


def test_split_run_products_match_the_python_loops(ops, monkeypatch):
    """Runs of steps over a weight set above 2 MB (share_every 3, H 400) on 2 threads: each run's input projection and
    input gradient go to the threads as two column halves (run_products). Values: those of one product per run and of
    the Python loops, the initial state's gradients included (a run that starts at offset 1 and one cut short)."""
    torch.manual_seed(7)
    core = UntiedLSTM(400, 400, 1, max_len=9, share_every=3)
    x = torch.randn(7, 4, 400, requires_grad=True)
    hx = initial_state("random", 4, 400, torch.float32)
    hx = (hx[0][:1].detach().requires_grad_(), hx[1][:1].detach().requires_grad_())
    with threads(2):
        split = outputs_and_grads(core, x, hx, True, monkeypatch, offset=1)
        with switched(ops.split_run_products, False):
            whole = outputs_and_grads(core, x, hx, True, monkeypatch, offset=1)
    python = outputs_and_grads(core, x, hx, False, monkeypatch, offset=1)
    for a, b, c in zip(split, whole, python, strict=True):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=5e-5)
        torch.testing.assert_close(a, c, atol=5e-5, rtol=5e-5)


@pytest.mark.parametrize("share_every", [1, 4])
def test_results_do_not_depend_on_the_thread_count(ops, share_every, monkeypatch):
    """The gate passes split the batch rows over torch's threads (here 12 rows of H 256: chunks of 4): the same bits
    on 1 and 2 threads (to MKL's rounding), and the Python loops' values."""
    torch.manual_seed(2)
    core = UntiedLSTM(8, 256, 2, max_len=6, share_every=share_every)
    x = torch.randn(6, 12, 8, requires_grad=True)
    with threads(1):
        one = outputs_and_grads(core, x, None, True, monkeypatch)
    with threads(2):
        two = outputs_and_grads(core, x, None, True, monkeypatch)
    python = outputs_and_grads(core, x, None, False, monkeypatch)
    for a, b, c in zip(one, two, python, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a, c, atol=2e-5, rtol=2e-5)


# M, K, N; for tn, C's rows of N floats: 800 start 32-byte aligned (streaming stores), 44, 650 and 13 start at 2, 4
# and 8 offsets from a 32-byte boundary (plain stores); for nn, the last three sum over K in several blocks of rows
# of w (50, 46 and 16 rows a block) with a shorter last one
SHAPES = [(20, 200, 800), (1, 5, 4), (2, 13, 12), (5, 8, 28), (7, 1, 36), (61, 250, 44), (100, 203, 44)]
SHAPES += [(40, 20, 650), (9, 20, 650), (33, 7, 13), (20, 2600, 650), (3, 300, 700), (5, 37, 4096)]
SHAPES += [(14, 20, 200), (6, 64, 48), (5, 9, 46)]  # AVX-512 tn: 6 rows past a band of 8, a streamed half
# register, rows of 46 floats (into `padded`: streamed but for the masked last register)


def small_product(ops, form: str, a, w, c, acc: bool, small: bool, avx512: bool = False) -> torch.Tensor:
    with switched(ops.use_small_products, small), switched(ops.use_avx512, avx512):
        ops.product(a, w, c, form, acc, 1 << 30, 1 << 19)
    return c


def needs_avx512(ops, avx512: bool) -> None:
    if avx512 and not ops.avx512_available():
        pytest.skip("no AVX-512 on this machine (or not a GCC build): the AVX2 kernels run (tested here too)")


@pytest.mark.parametrize("avx512", [False, True], ids=["avx2", "avx512"])
@pytest.mark.parametrize("form", ["nt", "tn", "nn"])
def test_small_products_match_float64(ops, form, avx512):
    """The float32 small-product kernels (csrc/small_gemm.h): nt c (+)= a @ w^T, tn c (+)= a^T @ w, nn c (+)= a @ w,
    against float64 products, in their AVX2 and (nt, tn) AVX-512 versions. Row tiles and their remainders, K and
    column counts that end inside an 8- or 16-lane register, accumulation, rows with gaps (leading dimensions), C
    written with and without streaming stores; and torch's products (the kernels switched off) alike. The paths sum in
    different orders, so their bits differ: the kernels ran; the AVX-512 nt's sums (16 lanes) are not the AVX2 one's
    (8 lanes). tn sums each output over K in order in both versions: the same bits."""
    if not ops.small_products_compiled():
        pytest.skip("no AVX2/FMA on this machine: torch's products run (covered by the tests above)")
    needs_avx512(ops, avx512)
    torch.manual_seed(4)
    differ, differ_avx2 = [], []
    for M, K, N in SHAPES:
        for acc in (False, True):
            pad = torch.randn(K + 3, M + 5) if form == "tn" else torch.randn(M + 3, K + 5)
            a = pad[:K, :M] if form == "tn" else pad[:M, :K]  # rows with gaps: lda > the row length
            w = torch.randn(N, K) if form == "nt" else torch.randn(K, N)
            c0 = torch.randn(M, N + 2)[:, :N]
            shifted = torch.empty(M * N + 1)[1:].view(M, N)  # rows start 4 bytes past torch's aligned allocation
            a64, w64 = a.double(), w.double()
            ref = (a64 @ w64.t() if form == "nt" else a64.t() @ w64 if form == "tn" else a64 @ w64) + (
                c0.double() if acc else 0
            )
            small = small_product(ops, form, a, w, c0.clone(), acc, True, avx512)
            plain = small_product(ops, form, a, w, c0.clone(), acc, False)
            off = small_product(ops, form, a, w, shifted.copy_(c0), acc, True, avx512)
            padded = torch.empty(M, (N + 7) // 8 * 8 + 8)[:, :N]  # rows 32-byte aligned, gaps after them
            gaps = small_product(ops, form, a, w, padded.copy_(c0), acc, True, avx512)
            for got in (small, plain, off, gaps):
                torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-4)
            differ.append(not torch.equal(small, plain))
            if avx512 and form == "nt":
                differ_avx2.append(not torch.equal(small, small_product(ops, form, a, w, c0.clone(), acc, True)))
    assert any(differ)
    assert not avx512 or form != "nt" or any(differ_avx2)


@pytest.mark.parametrize("avx512", [False, True], ids=["avx2", "avx512"])
def test_small_products_do_not_depend_on_the_thread_count(ops, avx512):
    if not ops.small_products_compiled():
        pytest.skip("no AVX2/FMA on this machine")
    needs_avx512(ops, avx512)
    torch.manual_seed(5)
    a, w, g, big = torch.randn(20, 200), torch.randn(800, 200), torch.randn(20, 800), torch.randn(800, 1300)
    out = {}
    for n in (1, 2):
        with threads(n):
            out[n] = (
                small_product(ops, "nt", a, w, torch.empty(20, 800), False, True, avx512),
                small_product(ops, "tn", g, a, torch.empty(800, 200), False, True, avx512),
                small_product(ops, "nn", g, big, torch.empty(20, 1300), False, True, avx512),  # 8 blocks of 25 rows
            )
    for x, y in zip(out[1], out[2], strict=True):
        assert torch.equal(x, y)


def test_the_kernels_compile_without_avx2(ops):
    """Where the build gets no -mavx2/-mfma (ARM, older x86) the sources still compile: the small products are then
    left out (torch's products run) rather than failing the whole build."""
    from torch.utils import cpp_extension

    cxx = shutil.which("c++") or shutil.which("g++")
    flags = [f for f in _native._cflags(False) if f not in ("-mavx2", "-mfma")]
    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    for src in _native.SOURCES:
        done = subprocess.run(
            [cxx, "-std=c++20", "-fsyntax-only", *flags, *includes, str(src)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]


def test_each_build_environment_builds_once_and_every_build_is_announced(tmp_path, monkeypatch, capsys):
    """Two checkouts / venvs (other include folders in torch's ninja file) get build folders of their own, and a
    build is announced whether it is the first or a ninja rebuild of an existing library (a fake compiler here)."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    names, rebuild = [], {"now": False}

    def fake_load(name, **kwargs):
        names.append(name)
        library = tmp_path / name / f"{name}.so"
        if not library.exists() or rebuild["now"]:
            library.parent.mkdir(parents=True, exist_ok=True)
            library.write_bytes(b"built")
            stamp = library.stat().st_mtime + 100 * len(names)
            os.utime(library, (stamp, stamp))

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    for venv in ("/clone-a/.venv", "/clone-b/.venv", "/clone-a/.venv", "/clone-b/.venv"):
        monkeypatch.setattr(cpp_extension, "include_paths", lambda *a, v=venv, **k: [f"{v}/torch/include"])
        _native._build(False)
    assert len(set(names)) == 2 and names[:2] == names[2:]  # one build each, then loads
    assert capsys.readouterr().err.count("compiling the CPU kernels") == 2
    rebuild["now"] = True  # ninja finds the library out of date (e.g. a header changed in place)
    _native._build(False)
    assert "rebuilt the CPU kernels" in capsys.readouterr().err


def test_float32_gates_saturate_without_nan(ops, monkeypatch):
    """Pre-activations far outside exp's float range (|x| in the hundreds) give 0/1 gates and finite gradients."""
    torch.manual_seed(2)
    core = UntiedLSTM(3, 4, 1, max_len=3)
    with torch.no_grad():
        for p in core.parameters():
            p.mul_(400)
    x = torch.randn(3, 2, 3, requires_grad=True)
    native = outputs_and_grads(core, x, None, True, monkeypatch)
    python = outputs_and_grads(core, x, None, False, monkeypatch)
    for a, b in zip(native, python, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_kernels_run_for_untied_and_time_varying_cores(ops):
    for core in (UntiedLSTM(3, 4, 2, max_len=5), TimeVaryingLSTM(3, 4, 2, num_bases=2)):
        x = torch.randn(5, 2, 3, requires_grad=True)
        with torch.profiler.profile() as prof:
            core(x)[0].sum().backward()
        names = {e.name for e in prof.events()}
        assert {"lrnn::step_weight_lstm_forward", "lrnn::step_weight_lstm_backward"} <= names, type(core).__name__


def test_half_precision_and_switched_off_use_the_python_loops(ops, monkeypatch):
    x = torch.randn(2, 2, 3)
    assert step_weight._native_ops(x) is ops
    assert step_weight._native_ops(x.to(torch.bfloat16)) is None
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", False)
    assert step_weight._native_ops(x) is None


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(_native, "_state", {})

    def no_compiler(openmp: bool):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(_native, "_build", no_compiler)
    with pytest.warns(RuntimeWarning, match="could not build the CPU kernels.*c\\+\\+: command not found"):
        assert _native.ops() is None
    assert _native.ops() is None  # cached: no second warning, no second build
    core = UntiedLSTM(3, 4, 1, max_len=4)
    out, _ = core(torch.randn(4, 2, 3))
    assert out.shape == (4, 2, 4)


def test_a_failed_openmp_build_is_retried_without_openmp(ops, monkeypatch):
    """A compiler without OpenMP support still gets the kernels (their row passes then run on one thread)."""
    from torch.utils import cpp_extension

    calls = []

    def load(**kwargs):
        calls.append(kwargs["extra_cflags"])
        if "-fopenmp" in kwargs["extra_cflags"]:
            raise RuntimeError("Error building extension: unrecognized command-line option '-fopenmp'")

    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setattr(_native, "_openmp", lambda: True)
    monkeypatch.setattr(cpp_extension, "load", load)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "could not build" warning
        assert _native.ops() is not None
    assert ["-fopenmp" in flags for flags in calls] == [True, False]


def test_lrnn_native_0_switches_the_kernels_off(monkeypatch):
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setenv("LRNN_NATIVE", "0")
    monkeypatch.setattr(_native, "_build", lambda openmp: pytest.fail("must not build"))
    assert _native.ops() is None


def test_shared_blocks_stay_in_the_kernels_on_cpu(ops, monkeypatch):
    """share_every >= 2 on CPU: the compiled kernels run the blocks (faster than one oneDNN call per block), with the
    same results as the oneDNN path that runs without them."""
    calls = []
    real = step_weight._lstm_runs
    monkeypatch.setattr(step_weight, "_lstm_runs", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    core = UntiedLSTM(3, 5, 2, max_len=10, share_every=5).to(F64)
    x = torch.randn(10, 2, 3, dtype=F64, requires_grad=True)
    native = outputs_and_grads(core, x, None, True, monkeypatch)
    assert calls == []
    onednn = outputs_and_grads(core, x, None, False, monkeypatch)
    assert len(calls) == 2  # one per layer
    for a, b in zip(native, onednn, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
