"""The CUDA kernels compile with plain nvcc (no torch headers) for the archs the recipe promises, so a
change that breaks compilation fails CI here, where nvcc exists and no GPU does."""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from fa_dist.decide import recipes, stable_abi

pytestmark = pytest.mark.integration
KERNELS = Path(__file__).resolve().parent.parent / "kernels"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_kernel_sources_compile_for_sm80_and_sm90(tmp_path: Path) -> None:
    recipe = recipes.load_all(source_root=KERNELS)["cuda"]
    assert recipe.extension is not None
    kernels = [s for s in recipe.extension.sources if s.endswith(".cu")]
    assert kernels, "the cuda recipe lists no .cu file"
    for source in kernels:
        out = tmp_path / (Path(source).stem + ".o")
        done = subprocess.run(
            ["nvcc", "-std=c++17", *recipe.extension.device_flags,
             *(f"-I{KERNELS / d}" for d in recipe.extension.include_dirs), "-gencode=arch=compute_80,code=sm_80",
             "-gencode=arch=compute_90,code=sm_90", "-c", str(KERNELS / source), "-o", str(out)],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert out.stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_hopper_forward_compiles_for_sm90a_without_spills(tmp_path: Path) -> None:
    """flash_fwd_sm90.cu in its real target: every kernel assembled (ptxas would reject wgmma or setmaxnreg
    outside sm_90a), no local memory, the mbarriers in static shared memory (how the host side recognises
    the real image), and, where a cuobjdump is at hand, wgmma instructions (HGMMA) in the machine code."""
    recipe = recipes.load_all(source_root=KERNELS)["cuda"]
    assert recipe.extension is not None
    out = tmp_path / "sm90.o"
    done = subprocess.run(
        ["nvcc", "-std=c++17", *recipe.extension.device_flags, f"-I{KERNELS / 'csrc'}",
         "-gencode=arch=compute_90a,code=sm_90a", "-Xptxas", "-v", "-c",
         str(KERNELS / "csrc/attention/flash_fwd_sm90.cu"), "-o", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stderr
    assert report.count("Compiling entry function") == 12, report  # 2 dtypes x 2 head dims x 3 schedules
    assert report.count("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads") == 12, report
    assert "warning" not in report.lower(), report  # e.g. setmaxnreg ignored, or wgmma serialized
    assert re.findall(r"(\d+) bytes smem", report) and all(int(n) > 0 for n in re.findall(r"(\d+) bytes smem", report))
    cuobjdump = shutil.which("cuobjdump") or _triton_cuobjdump()
    if cuobjdump:
        sass = subprocess.run([cuobjdump, "--dump-sass", str(out)], capture_output=True, text=True).stdout
        assert sass.count("HGMMA") >= 8, "no wgmma in the machine code"
        _assert_pingpong_softmax_between_the_waits(sass)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_hopper_backward_compiles_for_sm90a_without_spills(tmp_path: Path) -> None:
    """flash_bwd_sm90.cu in its real target: the dK/dV and dQ kernels for 2 dtypes x 2 head dims, no local
    memory, no warning (a serialized wgmma would be one), the mbarriers in static shared memory, and in the
    machine code each kernel's wgmma count: dK/dV 2 x D/16 score steps + 2 x inner/16 gradient steps, dQ
    2 x D/16 + inner/16 (inner: 128 query or key rows a step at head dim 64, 64 at 128)."""
    out = tmp_path / "bwd_sm90.o"
    done = subprocess.run(
        ["nvcc", "-std=c++17", *_device_flags(), f"-I{KERNELS / 'csrc'}", "-gencode=arch=compute_90a,code=sm_90a",
         "-Xptxas", "-v", "-c", str(KERNELS / "csrc/attention/flash_bwd_sm90.cu"), "-o", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stderr
    assert report.count("Compiling entry function") == 8, report
    assert report.count("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads") == 8, report
    assert "warning" not in report.lower(), report
    assert all(int(n) > 0 for n in re.findall(r"(\d+) bytes smem", report))
    cuobjdump = shutil.which("cuobjdump") or _triton_cuobjdump()
    if cuobjdump:
        sass = subprocess.run([cuobjdump, "--dump-sass", str(out)], capture_output=True, text=True).stdout
        expected = {"dkdv_kernelI6__halfLi64": 24, "dkdv_kernelI6__halfLi128": 24, "dq_kernelI6__halfLi64": 16,
                    "dq_kernelI6__halfLi128": 20}
        for body in re.split(r"\n\s*Function : ", sass)[1:]:
            name = re.sub(r"13__nv_bfloat16", "6__half", body.split()[0])
            kernel = next(k for k in expected if k in name)
            assert body.count("HGMMA") == expected[kernel], (name, body.count("HGMMA"))


def _device_flags() -> list[str]:
    recipe = recipes.load_all(source_root=KERNELS)["cuda"]
    assert recipe.extension is not None
    return list(recipe.extension.device_flags)


def _assert_pingpong_softmax_between_the_waits(sass: str) -> None:
    """In the ping-pong kernels the softmax's exponentials (MUFU.EX2) follow the wait for S = Q.K^T
    (WARPGROUP.DEPBAR.LE gsb0, 0x1) before any wait for O += P.V (0x0; the loop's is at its head): the
    P.V product overlaps the softmax. ptxas moves a wgmma wait to the top of its basic block, so this
    breaks silently when the code around the wait changes (the overlapped kernels have 0 such exps)."""
    functions = re.split(r"\n\s*Function : ", sass)
    pingpong = [f for f in functions if re.match(r"\S*Sm90ModeE3E", f)]
    assert len(pingpong) == 4, [f.split()[0] for f in functions]
    for body in pingpong:
        ops = re.findall(r"(WARPGROUP\.DEPBAR\.LE gsb0, 0x[01]|MUFU\.EX2)", body)
        after_s_wait = ops[ops.index("WARPGROUP.DEPBAR.LE gsb0, 0x1") + 1:]
        exps_before_pv_wait = after_s_wait[:after_s_wait.index("WARPGROUP.DEPBAR.LE gsb0, 0x0")]
        assert len(exps_before_pv_wait) >= 64, (body.split()[0], len(exps_before_pv_wait))


def _triton_cuobjdump() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    path = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"
    return str(path) if path.is_file() else None


# Undefined symbols a stable-ABI glue object may have: torch's C shim, the CUDA runtime, CPython's
# limited API, our own kernels, and the C/C++ runtime. Anything else (c10::, at::, torch:: C++ symbols
# or a version-specific CPython function) would tie the binary to one torch or one Python.
STABLE_OK = re.compile(
    r"^(aoti_torch_\w+|torch_\w+|cuda\w+|Py\w+|_ZN10fa_kernels\w+|_ZNK?[RO]?S[tosid]\w*|_ZSt\w+|_ZT[VIS]\w+"
    r"|_Z(dl|nw|da|na)\w*|__cxa_\w+|__gxx_personality_v0|_Unwind_Resume|__dso_handle|_GLOBAL_OFFSET_TABLE_"
    r"|__libc_single_threaded|mem(cpy|move|set)|str(cmp|len)|vsnprintf)$"
)


def _stable_headers(into: Path) -> Path:
    """Only torch's stable-ABI headers (csrc/stable, the C shim, headeronly), copied out of the installed
    torch: the glue compiling against these alone proves it includes no ATen/c10 header."""
    import torch.utils.cpp_extension as ext  # the CPU torch of the test venv ships the same headers

    torch_include = Path(ext.include_paths()[0])
    for part in ("torch/csrc/stable", "torch/headeronly", "torch/csrc/inductor/aoti_torch/c",
                 "torch/csrc/inductor/aoti_torch/generated"):
        shutil.copytree(torch_include / part, into / part)
    return into


@pytest.mark.skipif(shutil.which("g++") is None or not Path("/usr/local/cuda/include/cuda_runtime.h").is_file(),
                    reason="needs g++ and the CUDA headers")
def test_glue_builds_against_the_stable_headers_only(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    recipe = recipes.load_all(source_root=KERNELS)["cuda"]
    assert recipe.extension is not None and recipe.stable_abi_target is not None
    include = _stable_headers(tmp_path / "include")
    obj = tmp_path / "ops.o"
    done = subprocess.run(
        ["g++", "-std=c++20", "-c", "-O1", "-fPIC", *recipe.extension.cxx_flags,
         stable_abi.target_flag(recipe.stable_abi_target), f"-DPy_LIMITED_API={stable_abi.LIMITED_API_HEX}",
         f"-I{include}", "-I/usr/local/cuda/include", f"-I{sysconfig.get_paths()['include']}",
         *(f"-I{KERNELS / d}" for d in recipe.extension.include_dirs), str(KERNELS / "csrc" / "ops.cpp"),
         "-o", str(obj)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    undefined = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
    names = [n for n in undefined if n != "U"]
    assert "torch_library_impl" in names and "aoti_torch_get_current_cuda_stream" in names
    assert [n for n in names if not STABLE_OK.match(n)] == []
