"""Stdlib-only probe, executed BY THE TARGET INTERPRETER: ``python probe.py SECTION [ARGS]``.

It prints one JSON object on stdout and never raises: failures become ``{"error": ...}``. Keep it
runnable on Python 3.8+ with nothing but the standard library; it lives alone in this folder so that
running it puts nothing of fa-dist's on the target's sys.path.

Sections:
  python            interpreter, platform and installed distributions (no third-party imports)
  torch             imports torch and reports its build and the devices it sees
  import DIST MOD.. imports torch (if present) then each module, reporting the first failure
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import sysconfig
import time
import traceback
import warnings

try:
    from importlib import metadata
except ImportError:  # pragma: no cover - Python < 3.8
    metadata = None  # type: ignore[assignment]


def _dist(name):
    if metadata is None:
        return None
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    try:
        location = str(dist.locate_file(""))
    except Exception:
        location = None
    folder = getattr(dist, "_path", None)  # the dist-info folder (PathDistribution, 3.8+)
    return {
        "name": name,
        "version": dist.version,
        "location": location,
        "requires_torch": _torch_pin(dist),
        "dist_info": str(folder) if folder is not None else None,
    }


def _with_dirs(dist):
    """The dist plus the folders its top-level packages load from (an editable install's are its
    source tree): the facts cache keys on their files."""
    try:
        top = (metadata.distribution(dist["name"]).read_text("top_level.txt") or "").split()
    except Exception:
        top = []
    names = top or [dist["name"].replace("-", "_")]
    dist["package_dirs"] = [d for d in (_package_dir(n) for n in names) if d]
    return dist


def _package_dir(name):
    """Where ``import name`` would load the package from, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


def _torch_pin(dist):
    """The ``torch`` requirement of a distribution (``torch==2.10.0``), extras left out, or None."""
    for req in dist.requires or []:
        head = req.split(";")[0].strip()
        name = head.split("[")[0]
        for op in "=<>!~ (":
            name = name.split(op)[0]
        if name.strip().lower() == "torch" and "extra ==" not in req:
            return head.replace(" ", "")
    return None


# Packages beside ours that use or provide attention kernels (issue #18): read from metadata only
NEIGHBOURS = (
    "xformers",
    "flash-attn-4",
    "flash-attn-3",
    "vllm-flash-attn",
    "transformers",
    "kernels",  # Hugging Face's hub-kernel loader: transformers' flash_attention_2 fallback
)


def _flash_attn_providers():
    """Every installed distribution that ships a top-level ``flash_attn``, and where ``import
    flash_attn`` would resolve: found without importing it."""
    import importlib.util

    found = []
    for dist in metadata.distributions() if metadata else ():
        name = dist.metadata["Name"] or ""
        top = (dist.read_text("top_level.txt") or "").split()
        # reading every RECORD is slow in a big environment: only flash/attn-named ones lack top_level
        if not top and ("flash" in name.lower() or "attn" in name.lower()):
            top = sorted({str(f).split("/")[0] for f in dist.files or ()})
        if "flash_attn" in top:
            try:
                location = str(dist.locate_file(""))
            except Exception:
                location = None
            found.append({"name": name, "version": dist.version, "location": location})
    try:
        spec = importlib.util.find_spec("flash_attn")
    except (ImportError, ValueError):
        spec = None
    origin = (
        (spec.origin or next(iter(spec.submodule_search_locations or []), None)) if spec else None
    )
    return {"providers": found, "origin": origin}


def _glibc():
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    if text and text.startswith("glibc "):
        return text.split()[1]
    return None


def _abi_tag():
    impl = sys.implementation.name
    ver = f"{sys.version_info[0]}{sys.version_info[1]}"
    if impl == "cpython":
        threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
        return "cp" + ver + threaded
    if impl == "pypy":
        return "pypy" + ver
    return impl + ver


def section_python(_args):
    pip = _dist("pip")
    torch = _dist("torch")
    triton = _dist("triton") or _dist("pytorch-triton-rocm") or _dist("pytorch-triton")
    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "implementation": sys.implementation.name,
        "abi_tag": _abi_tag(),
        "platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "glibc": _glibc(),
        "prefix": sys.prefix,
        "in_venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "pip_version": pip["version"] if pip else None,
        "torch_dist": torch,
        "torch_dir": _package_dir("torch"),
        # the folders imports come from (not this probe's own): their mtimes key the facts cache
        "sys_path": [p for p in sys.path[1:] if os.path.isdir(p)],
        "triton_version": triton["version"] if triton else None,
        "dists": [_with_dirs(d) for d in (_dist(n) for n in ("flash-attn", "fa-kernels")) if d],
        "neighbours": [_with_dirs(d) for d in (_dist(n) for n in NEIGHBOURS) if d],
        "flash_attn": _flash_attn_providers(),
    }


def _torch_triton_requirement():
    if metadata is None:
        return None
    try:
        requires = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return None
    for req in requires:
        if req.replace("-", "_").startswith(("triton", "pytorch_triton")) and "extra" not in req:
            return req.split(";")[0].strip()
    return None


def section_torch(_args):
    started = time.perf_counter()
    try:
        import torch
    except ImportError as exc:
        status = "missing" if getattr(exc, "name", None) == "torch" else "broken"
        return {"status": status, "error": _error_text(exc)}
    except Exception as exc:
        return {"status": "broken", "error": _error_text(exc)}
    out = {
        "status": "ok",
        "version": torch.__version__,
        "location": os.path.dirname(torch.__file__),
        "cuda": getattr(torch.version, "cuda", None),
        "hip": getattr(torch.version, "hip", None),
        "cxx11_abi": bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", False)),
        "triton_requirement": _torch_triton_requirement(),
    }
    imported = time.perf_counter()
    out.update(_torch_devices(torch))
    # cuDNN's version from its wheel's metadata: asking torch would dlopen libcudnn (~1 s)
    cudnn = _dist("nvidia-cudnn-cu13") or _dist("nvidia-cudnn-cu12") or _dist("nvidia-cudnn-cu11")
    out["cudnn"] = cudnn["version"] if cudnn else None
    out["timings"] = {
        "import_s": round(imported - started, 3),
        "devices_s": round(time.perf_counter() - imported, 3),
    }
    return out


def _torch_devices(torch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            available = bool(torch.cuda.is_available())
            count = torch.cuda.device_count() if available else 0
        except Exception as exc:
            return {"cuda_available": False, "cuda_error": _error_text(exc), "devices": []}
    messages = [str(w.message) for w in caught]
    devices = []
    for i in range(count):
        try:
            props = torch.cuda.get_device_properties(i)
            arch = getattr(props, "gcnArchName", None) if torch.version.hip else None
            if not arch:
                arch = f"{props.major}.{props.minor}"
            devices.append(
                {
                    "index": i,
                    "name": props.name,
                    "arch": arch.split(":")[0],
                    "memory_mib": int(props.total_memory // (1024 * 1024)),
                }
            )
        except Exception as exc:
            messages.append(f"device {i}: {_error_text(exc)}")
    try:
        arch_list = list(torch.cuda.get_arch_list()) if available else []
    except Exception:
        arch_list = []
    return {
        "cuda_available": available,
        "cuda_error": "; ".join(messages) or None,
        "devices": devices,
        "arch_list": arch_list,
    }


SDPA_BACKENDS = {"flash": "flash", "mem_efficient": "efficient", "cudnn": "cudnn"}


def _sdpa(torch, cuda_available):
    """torch SDPA's backend switches, and on a GPU which backends accept fp16/bf16 at head dims 64
    and 128 (torch's own can_use_* checks on tiny tensors: what F.scaled_dot_product_attention asks)."""
    cuda = getattr(torch.backends, "cuda", None)
    enabled = {}
    for name in ("flash", "mem_efficient", "cudnn", "math"):
        fn = getattr(cuda, name + "_sdp_enabled", None)
        enabled[name] = bool(fn()) if fn else None
    usable = {}
    if cuda_available:
        for dtype in ("float16", "bfloat16"):
            for head_dim in (64, 128):
                for name, check in SDPA_BACKENDS.items():
                    key = f"{name}/{'fp16' if dtype == 'float16' else 'bf16'}/{head_dim}"
                    usable[key] = _sdpa_can_use(torch, check, getattr(torch, dtype), head_dim)
    chosen = {}
    for dtype in ("float16", "bfloat16"):
        for head_dim in (64, 128):
            key = f"{'fp16' if dtype == 'float16' else 'bf16'}/{head_dim}"
            chosen[key] = _sdpa_choice(torch, getattr(torch, dtype), head_dim, cuda_available)
    return {"enabled": enabled, "usable": usable, "chosen": chosen}


def section_sdpa(_args):
    """torch SDPA's backends here, in a process of its own (only for doctor --attention and detect): it
    puts tensors on the GPU, and a crash in it must not cost the torch facts every command needs."""
    try:
        import torch
    except Exception as exc:
        return {"error": _error_text(exc)}
    try:
        available = bool(torch.cuda.is_available())
    except Exception:
        available = False
    return {"sdpa": _sdpa(torch, available)}


def _sdpa_choice(torch, dtype, head_dim, cuda_available):
    """The backend torch's own dispatcher picks for causal self-attention of this shape."""
    try:
        from torch.nn.attention import SDPBackend

        q = torch.zeros(
            1, 8, 128, head_dim, dtype=dtype, device="cuda" if cuda_available else "cpu"
        )
        choice = torch._fused_sdp_choice(q, q, q, None, 0.0, True)
        return SDPBackend(choice).name
    except Exception:
        return None


def _sdpa_can_use(torch, check, dtype, head_dim):
    fn = getattr(torch.backends.cuda, "can_use_" + check + "_attention", None)
    if fn is None:
        return None  # this torch has no such check (cuDNN's came in 2.5)
    try:
        q = torch.zeros(1, 8, 128, head_dim, dtype=dtype, device="cuda")
        try:
            params = torch.backends.cuda.SDPAParams(q, q, q, None, 0.0, True, False)
        except TypeError:  # torch < 2.5: no enable_gqa
            params = torch.backends.cuda.SDPAParams(q, q, q, None, 0.0, True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(fn(params, False))
    except Exception:
        return None


# xformers' fmha implementations (modules of xformers.ops.fmha), best first as its dispatcher tries them
XFORMERS_FMHA = (
    "flash3",
    "flash",
    "cutlass",
    "ck",
    "ck_decoder",
    "ck_splitk",
    "triton_splitk",
    "small_k",
)


def _xformers_fmha_ops():
    """What `python -m xformers.info` says of each fmha forward op (built and available or not), and on a
    GPU whether it takes causal fp16 attention at head dim 128 here (else why not): {op name: status}."""
    import importlib

    inputs = None
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # no working torch: the ops' build status is still worth saying
        cuda = False
    if cuda:
        fmha = importlib.import_module("xformers.ops.fmha")
        q = torch.zeros(1, 128, 8, 128, dtype=torch.float16, device="cuda")
        inputs = fmha.Inputs(
            query=q, key=q, value=q, attn_bias=fmha.attn_bias.LowerTriangularMask()
        )
    found = {}
    for name in XFORMERS_FMHA:
        if not _has_module(f"xformers.ops.fmha.{name}"):  # not in this xformers release
            continue
        try:
            op = getattr(importlib.import_module(f"xformers.ops.fmha.{name}"), "FwOp", None)
            if op is None:
                continue
            status = str(op.info()) if hasattr(op, "info") else "present"
            if inputs is not None and status == "available":
                reasons = op.not_supported_reasons(inputs)
                status = (
                    "usable here"
                    if not reasons
                    else "not for this input: " + "; ".join(map(str, reasons))
                )
            found[str(getattr(op, "NAME", name))] = status[:300]
        except Exception as exc:
            found[name] = f"cannot tell: {_error_text(exc)[:200]}"
    return found


def _xformers_op():
    """The forward op xformers' dispatcher picks here for causal fp16 attention at head dim 128."""
    import importlib

    import torch

    fmha = importlib.import_module("xformers.ops.fmha")

    if not torch.cuda.is_available():
        return None
    q = torch.zeros(1, 128, 8, 128, dtype=torch.float16, device="cuda")
    mask = fmha.attn_bias.LowerTriangularMask()
    op = fmha._dispatch._dispatch_fw(fmha.Inputs(query=q, key=q, value=q, attn_bias=mask), False)
    return getattr(op, "NAME", None) or type(op).__name__


def section_import(args):
    """args: DIST BUILD_INFO_RELPATH MODULE... ; the build info is read WITHOUT importing anything."""
    dist_name, build_info_path, modules = args[0], args[1], args[2:]
    info = {"build_info": _read_build_info(dist_name, build_info_path)}
    if dist_name == "fa-kernels":
        info["precompiled"] = _read_precompiled(dist_name)
    with contextlib.suppress(Exception):
        import torch  # noqa: F401  - compiled extensions need libtorch loaded first
    for module in modules:
        optional = module.endswith("?")  # "pkg._C?": import only if the installed package has it
        module = module.rstrip("?")
        if optional and not _has_module(module):
            continue
        try:
            __import__(module)
        except BaseException as exc:
            info.update({"status": "broken", "error": f"import {module}: {_error_text(exc)}"})
            return info
    info["status"] = "ok"
    if dist_name == "xformers":
        try:
            info["attention_op"] = _xformers_op()
        except Exception as exc:
            info["attention_op"] = None
            info["attention_op_error"] = _error_text(exc)
        info["fmha_ops"] = _xformers_fmha_ops()
    return info


def _has_module(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return True  # the parent fails to import: try, and report that failure


def _read_build_info(dist_name, relpath):
    dist = _dist(dist_name)
    if not dist or relpath == "-" or not dist["location"]:
        return {}
    path = os.path.join(dist["location"], relpath)
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict) and isinstance(data.get("version"), dict):
        data = data["version"]  # xformers' cpp_lib.json: {"version": {"torch": ..., "cuda": ...}}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _read_precompiled(dist_name):
    """fa_kernels' precompiled Triton kernels (fa_kernels/_precompiled/*/manifest.json), from the files:
    {"triton-3.6.0 cuda:90": number of kernels}."""
    dist = _dist(dist_name)
    found = {}
    folder = (
        os.path.join(dist["location"], "fa_kernels", "_precompiled")
        if dist and dist["location"]
        else ""
    )
    for name in sorted(os.listdir(folder)) if folder and os.path.isdir(folder) else ():
        try:
            with open(os.path.join(folder, name, "manifest.json")) as f:
                data = json.load(f)
            found[f"triton-{data['triton']} {data['target']}"] = len(data["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _error_text(exc):
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 4000 else text[:4000] + "..."


PART = "FA_DIST_PART "


def section_torch_and_imports(args):
    """args: SPEC [-- SPEC ...], each an import section's args. torch's facts, then each package's import,
    in this one process (one `import torch` instead of one per probe); each answer is printed as soon as it
    is known, so a crash in a later import costs only the answers not yet printed."""
    _part("torch", section_torch([]))
    specs = []  # type: list[list[str]]
    current = []  # type: list[str]
    for arg in args:
        if arg == "--":
            specs.append(current)
            current = []
        else:
            current.append(arg)
    specs += [current] if current else []
    for spec in specs:
        _part(spec[0], section_import(spec))
    return {"parts": 1 + len(specs)}


def _part(key, answer):
    sys.stdout.write("\n" + PART + json.dumps({"key": key, "answer": answer}) + "\n")
    sys.stdout.flush()


SECTIONS = {
    "python": section_python,
    "torch": section_torch,
    "sdpa": section_sdpa,
    "import": section_import,
    "torch+import": section_torch_and_imports,
}


def main(argv):
    if not argv or argv[0] not in SECTIONS:
        result = {"error": "usage: probe.py {{{}}} [ARGS]".format("|".join(SECTIONS))}
    else:
        try:
            result = SECTIONS[argv[0]](argv[1:])
        except Exception:
            result = {"error": traceback.format_exc(limit=5)}
    sys.stdout.write("\n" + "FA_DIST_PROBE " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
