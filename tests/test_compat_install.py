"""`fa-dist install --flash-attn-compat` for real: into a throwaway venv that sees this environment's
torch but no fa-kernels and no flash-attn, with the pure-Triton wheel (smoke tests under Triton's
CPU interpreter). Then pip takes the compat as flash-attn for a package that requires it, doctor
names it, and `fa-dist uninstall` leaves the venv as it was. Refused over a real flash-attn; rolled
back, fa-kernels too, when its smoke test fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from fa_dist.act import record as install_record
from fa_dist.act import wheelhouse

from .envs import OURS, shared_venv

pytest.importorskip("torch")
pytestmark = pytest.mark.integration

# run in the target: what transformers 5.x does before and when it picks attn_implementation="flash_attention_2"
TRANSFORMERS_STYLE = textwrap.dedent("""
    import importlib, importlib.metadata as md, importlib.util, inspect
    from packaging.version import Version
    for name in ("flash_attn", "flash_attn.flash_attn_interface", "flash_attn.bert_padding",
                 "flash_attn.ops.triton.layer_norm", "flash_attn.ops.rms_norm", "flash_attn.layers.rotary"):
        importlib.import_module(name)
    assert importlib.util.find_spec("flash_attn") is not None
    dists = [d.replace("_", "-") for d in md.packages_distributions().get("flash_attn", [])]
    assert dists == ["flash-attn"], dists
    assert Version(md.version("flash-attn")) >= Version("2.3.3") and Version(md.version("flash_attn")) >= Version("2.1.0")
    from flash_attn import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache
    from flash_attn.bert_padding import index_first_axis, pad_input, unpad_input
    from flash_attn.layers.rotary import apply_rotary_emb
    from flash_attn.ops.triton.layer_norm import RMSNorm, rms_norm_fn
    from flash_attn.ops.rms_norm import DropoutAddRMSNorm
    params = inspect.signature(flash_attn_varlen_func).parameters
    assert {"dropout_p", "window_size", "softcap", "deterministic", "max_seqlen_q", "block_table"} <= set(params)
    print("transformers-style checks passed", md.version("flash-attn"))
""")


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env})


def fa_dist(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "fa_dist", *args], FA_DIST_CACHE_DIR=str(cache), **env)


def make_target(root: Path) -> Path:
    """A venv whose site-packages links this environment's packages except fa-kernels, fa-dist and
    any flash-attn."""
    return shared_venv(root, hide=(*OURS, "flash"))


def site_listing(python: Path) -> set[str]:
    (site_dir,) = (python.parent.parent / "lib").glob("python3*/site-packages")
    return {p.name for p in site_dir.iterdir() if p.name != "__pycache__"}


def wheel_of(folder: Path, name: str, version: str, files: dict[str, str], requires: str = "") -> Path:
    """A minimal real wheel, as a throwaway package for pip."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + (f"Requires-Dist: {requires}\n" if requires else "")
    contents = {**files, f"{info}/METADATA": meta,
                f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for rel, text in contents.items():
            archive.writestr(rel, text)
        archive.writestr(f"{info}/RECORD", "".join(f"{rel},,\n" for rel in contents) + f"{info}/RECORD,,\n")
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    done = fa_dist("build", "--recipe", "triton", "--wheelhouse", str(folder), cache=folder.parent / "build-cache")
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_install_pip_sees_flash_attn_doctor_names_it_uninstall_restores(tmp_path: Path, wheels: Path) -> None:
    target, cache = make_target(tmp_path), tmp_path / "cache"
    before = site_listing(target)
    done = fa_dist("install", "--python", str(target), "--no-build", "--wheelhouse", str(wheels),
                   "--flash-attn-compat", "--json", cache=cache)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    entry = result["flash_attn_compat"]
    built = cache / "flash-attn-compat" / entry["wheel"]
    assert entry["version"] == "2.8.3+fakernels.0.1.0" and entry["sha256"] == wheelhouse.sha256_of(built)
    assert entry["smoke"]["passed"] is True and result["smoke_passed"] is True
    assert json.loads(Path(result["record"]).read_text())[install_record.COMPAT_KEY] == entry
    checked = run([str(target), "-c", TRANSFORMERS_STYLE])
    assert checked.returncode == 0, checked.stderr[-3000:]

    # a package that requires flash-attn: pip takes the compat as satisfying it, builds nothing
    needs = wheel_of(tmp_path / "pkgs", "needs-flash-attn", "1.0", {"needs_flash_attn.py": "import flash_attn\n"},
                     requires="flash-attn>=2.3.3")
    pip = run([str(target), "-m", "pip", "install", "--no-index", "--find-links", str(needs.parent), "needs-flash-attn"])
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    assert "Requirement already satisfied: flash-attn>=2.3.3" in pip.stdout and "fakernels" in pip.stdout
    assert not [ln for ln in run([str(target), "-m", "pip", "check"]).stdout.splitlines()
                if "flash-attn" in ln or "fa-kernels" in ln]

    doctor = fa_dist("doctor", "--python", str(target), "--json", cache=cache)
    report = json.loads(doctor.stdout)
    (finding,) = [f for f in report["findings"] if f["id"] == "flash-attn-compat"]
    assert finding["severity"] == "ok" and "over fa-kernels 0.1.0" in finding["title"]
    assert report["install_record"][install_record.COMPAT_KEY]["sha256"] == entry["sha256"]

    assert run([str(target), "-m", "pip", "uninstall", "-y", "needs-flash-attn"]).returncode == 0
    removed = fa_dist("uninstall", "--python", str(target), "--flash-attn-compat", cache=cache)
    assert removed.returncode == 0 and "removed: flash-attn" in removed.stdout, removed.stderr
    assert {n for n in site_listing(target) - before} == {"fa_kernels", "fa_kernels-0.1.0.dist-info"}
    assert install_record.COMPAT_KEY not in json.loads(Path(result["record"]).read_text())
    assert fa_dist("uninstall", "--python", str(target), cache=cache).returncode == 0
    assert site_listing(target) == before and not Path(result["record"]).exists()


def test_refused_over_a_real_flash_attn_and_rolled_back_with_fa_kernels_when_its_smoke_fails(
        tmp_path: Path, wheels: Path) -> None:
    target, cache = make_target(tmp_path), tmp_path / "cache"
    upstream = wheel_of(tmp_path / "up", "flash-attn", "2.7.4.post1",
                        {"flash_attn/__init__.py": "__version__ = '2.7.4.post1'\n", "flash_attn_2_cuda.py": ""})
    assert run([str(target), "-m", "pip", "install", "--no-deps", str(upstream)]).returncode == 0
    refused = fa_dist("install", "--python", str(target), "--no-build", "--wheelhouse", str(wheels),
                      "--flash-attn-compat", cache=cache)
    assert refused.returncode == 2, refused.stderr
    assert "a real flash-attn is installed: flash-attn 2.7.4.post1" in refused.stderr and "fa-dist doctor" in refused.stderr
    assert not any(n.startswith("fa_kernels") for n in site_listing(target))  # nothing changed
    kept = fa_dist("uninstall", "--python", str(target), "--flash-attn-compat", cache=cache)
    assert kept.returncode == 2 and "is the upstream package, not fa-dist's compat" in kept.stderr
    assert run([str(target), "-m", "pip", "uninstall", "-y", "flash-attn"]).returncode == 0

    before = site_listing(target)
    # a default backend fa_kernels' own smoke test never uses (it names one per case), so only
    # the calls through flash_attn's names fail
    failed = fa_dist("install", "--python", str(target), "--no-build", "--wheelhouse", str(wheels),
                     "--flash-attn-compat", cache=cache, FA_KERNELS_BACKEND="planted-failure")
    assert failed.returncode == 8, failed.stderr[-3000:]
    assert "the flash-attn compat's smoke test failed (attention through flash_attn:" in failed.stderr
    assert ("removed the new flash-attn (none was installed before); removed the new fa-kernels (none "
            "was installed before)") in failed.stderr
    assert site_listing(target) == before and install_record.read_record(str(target.parent.parent)) is None


def installed_files(python: Path) -> dict[str, bytes]:
    """Every file of fa-kernels and the compat in the target's site-packages (no bytecode)."""
    (site_dir,) = (python.parent.parent / "lib").glob("python3*/site-packages")
    return {str(p.relative_to(site_dir)): p.read_bytes()
            for top in site_dir.iterdir() if top.name.startswith(("fa_kernels", "flash_attn"))
            for p in ([top] if top.is_file() else sorted(top.rglob("*")))
            if p.is_file() and "__pycache__" not in p.parts}


def test_a_failed_compat_smoke_restores_the_previous_fa_kernels_and_compat_and_record(
        tmp_path: Path, wheels: Path) -> None:
    target, cache = make_target(tmp_path), tmp_path / "cache"
    args = ("install", "--python", str(target), "--no-build", "--wheelhouse", str(wheels), "--flash-attn-compat")
    first = fa_dist(*args, cache=cache)
    assert first.returncode == 0, first.stderr[-3000:]
    # mark the previous install's files, so that a reinstall of the same versions cannot pass for a restore
    (site_dir,) = (target.parent.parent / "lib").glob("python3*/site-packages")
    for module in ("fa_kernels/__init__.py", "flash_attn/__init__.py"):
        with (site_dir / module).open("a") as f:
            f.write("# the previous install\n")
    before = installed_files(target)
    record = target.parent.parent / install_record.RECORD_NAME
    record_before = record.read_bytes()
    assert any(n.startswith("flash_attn-") for n in before) and any(n.startswith("fa_kernels-") for n in before)

    failed = fa_dist(*args, cache=cache, FA_KERNELS_BACKEND="planted-failure")
    assert failed.returncode == 8, failed.stderr[-3000:]
    assert "the flash-attn compat's smoke test failed" in failed.stderr
    assert "restored flash-attn 2.8.3+fakernels.0.1.0; restored fa-kernels 0.1.0" in failed.stderr
    assert installed_files(target) == before and record.read_bytes() == record_before
