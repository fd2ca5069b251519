"""Every Triton kernel compiles for a real GPU target (sm_90: frontend, NVIDIA backend and the bundled
ptxas) without a GPU. The interpreter runs kernels as Python, so this catches what only the compiler
sees (types of loop-carried values, constexpr misuse, unsupported ops). Runs in a subprocess because
the test session sets TRITON_INTERPRET=1, under which @triton.jit functions cannot be compiled."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

triton = pytest.importorskip("triton")

_SCRIPT = textwrap.dedent(
    """
    import sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import megalodoc.kernels.cema.triton_cema as C
    import megalodoc.kernels.timestep_norm.triton_tsn as T

    IO = {"x_ptr", "y_ptr", "dy_ptr", "dx_ptr"}  # tensors in the input's dtype
    FLOATS = {"inv_g", "eps"}

    def compile_kernel(kernel, constexprs, io_type, num_warps=4):
        sig, cx = {}, {}
        for i, name in enumerate(kernel.arg_names):
            if name in constexprs:
                sig[name], cx[(i,)] = "constexpr", constexprs[name]
            elif name.endswith("_ptr"):
                sig[name] = io_type if name in IO else ("*i64" if name == "count0_ptr" else "*fp32")
            else:
                sig[name] = "fp32" if name in FLOATS else "i32"
        src = ASTSource(kernel, sig, constexprs=cx)
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})

    cema = dict(BLOCK_R=32, BLOCK_N=16)
    tsn = dict(BLOCK_T=64, BLOCK_G=1, BLOCK_F=32)
    cases = [
        (C._cema_fwd_local_kernel, cema),
        (C._cema_fwd_carry_kernel, dict(cema, HAS_INIT=True)),
        (C._cema_fwd_kernel, dict(cema, HAS_START=True, WRITE_FINAL=True)),
        (C._cema_bwd_local_kernel, cema),
        (C._cema_bwd_carry_kernel, dict(cema, HAS_DHF=True)),
        (C._cema_bwd_kernel, dict(cema, HAS_START=True, HAS_GIN=True, WRITE_DH0=True)),
        (T._tsn_fwd_segment_kernel, tsn),
        (T._tsn_fwd_kernel, dict(tsn, HAS_INIT=True, WRITE_FINAL=True, BLOCK_C=128)),
        (T._tsn_bwd_segment_kernel, dict(tsn, HAS_INIT=True)),
        (T._tsn_bwd_kernel, dict(tsn, HAS_INIT=True, HAS_DSTATE=True, WRITE_DSTATE0=True, BLOCK_C=128)),
    ]
    io_type = sys.argv[1]
    for kernel, constexprs in cases:
        compiled = compile_kernel(kernel, constexprs, io_type)
        assert compiled.asm.get("cubin"), kernel.__name__
        print("compiled", kernel.__name__)
    """
)


def test_kernels_compile_for_sm90(io_type: str = "*bf16") -> None:
    """bf16 inputs and outputs (the model's dtype on a GPU); fp32 differs only by no-op casts."""
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:  # a triton without this compiler API: nothing to check here
        pytest.skip(f"triton {triton.__version__} lacks the offline compiler API: {exc}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silences a deprecation warning in triton 3.9
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, io_type], capture_output=True, text=True, timeout=300, env=env
    )
    if done.returncode != 0 and "ptxas" in done.stderr and "not found" in done.stderr.lower():
        pytest.skip("this triton install has no ptxas")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert done.stdout.count("compiled") == 10, done.stdout
