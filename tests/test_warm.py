"""Precompiling the Triton kernels (fa-dist warm, install's and build's precompile step): when it runs,
how its progress is read, how its files get into a wheel, and what a machine without a GPU is told."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fa_dist.act import warm as act_warm
from fa_dist.act import wheelcheck, wheelpatch
from fa_dist.decide import build_plan
from fa_dist.errors import WarmFailed
from fa_dist.model.versions import Arch

from .envs import CPU, H100, mutate
from .test_build import plan_for
from .wheelcraft import craft, passing_smoke


def test_progress_lines_feed_the_bar_and_failed_cases_get_a_line():
    bars: list[tuple[int, int]] = []
    notes: list[str] = []
    each = act_warm.relay(lambda done, total: bars.append((done, total)), notes.append)
    for line in ["warm: 1/60 attention bfloat16 d64", "noise", "warm: 2/60 norm float16 n4096 FAILED: OOM",
                 "warm: x/60 bad"]:
        each(line)
    assert bars == [(1, 60), (2, 60)]
    assert len(notes) == 1 and "FAILED: OOM" in notes[0]
    assert act_warm.progress_of("warm: 7/9 decode bfloat16 d128 causal split") == (7, 9, "decode bfloat16 d128 causal split")
    assert act_warm.progress_of("smoke: pass") is None


def test_a_build_precompiles_only_for_the_gpus_here_and_with_triton():
    h100 = H100()
    assert build_plan.precompile_skip(h100, plan_for(h100)) is None  # native: built for the H100 here
    assert build_plan.precompile_skip(mutate(h100, triton_version=None), plan_for(h100)) == \
        "no triton in the target environment"
    other = plan_for(h100, arch="sm_80")
    assert build_plan.precompile_skip(h100, other) == "the wheel is not built for every GPU here"
    assert build_plan.precompile_skip(CPU(), plan_for(CPU(), recipe="triton")) == "no GPU visible to the target's torch"
    sm90a = Arch.parse("sm_90a")
    assert (sm90a.major, sm90a.minor) == (9, 0)  # an sm_90a build runs on the sm_90 GPU here


def test_the_result_is_the_last_json_object_line():
    assert act_warm.parse_result('warm: 1/2 x\n{"group": "g"}\n') == {"group": "g"}
    assert act_warm.parse_result('{"a": 1}\n[1, 2]\n{broken\n') == {"a": 1}
    assert act_warm.parse_result("nothing\n") is None


def _record(zf: zipfile.ZipFile) -> dict[str, str]:
    name = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
    rows = [line.split(",") for line in zf.read(name).decode().splitlines() if line]
    return {path: digest for path, digest, _size in rows}


def test_files_added_to_a_wheel_are_listed_in_its_record_with_their_hashes(tmp_path):
    wheel = craft(tmp_path / "wh", "0.3.0", passing_smoke("0.3.0"))
    store = tmp_path / "store" / "triton-3.6.0-cuda-90"
    (store / "ABC").mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps({"format": 1}))
    (store / "ABC" / "k.cubin").write_bytes(b"\x7fELF" + bytes(range(256)))
    assert wheelpatch.add_tree(wheel, tmp_path / "store", "fa_kernels/_precompiled") == 2
    with zipfile.ZipFile(wheel) as zf:
        record = _record(zf)
        names = [n for n in zf.namelist() if not n.endswith("RECORD")]
        assert set(record) - set(names) == {next(n for n in zf.namelist() if n.endswith("RECORD"))}
        for name in names:  # every file, old and new, with its own hash
            digest = base64.urlsafe_b64encode(hashlib.sha256(zf.read(name)).digest()).rstrip(b"=").decode()
            assert record[name] == f"sha256={digest}"
        assert "fa_kernels/_precompiled/triton-3.6.0-cuda-90/ABC/k.cubin" in names
    wheelcheck.check(wheel, wheel.name)  # still the same distribution and version

    (store / "ABC" / "k.cubin").unlink()  # adding again replaces what was under the prefix
    assert wheelpatch.add_tree(wheel, tmp_path / "store", "fa_kernels/_precompiled") == 1
    with zipfile.ZipFile(wheel) as zf:
        assert not any(n.endswith("k.cubin") for n in zf.namelist())
        assert "fa_kernels/__init__.py" in zf.namelist()


@pytest.mark.integration  # runs the test interpreter, which has a CPU torch and fa_kernels
def test_warm_without_a_gpu_says_why_and_what_still_works():
    with pytest.raises(WarmFailed) as caught:
        act_warm.run(sys.executable, timeout=300)
    assert "no GPU visible to torch" in str(caught.value)
    assert "compile at first use" in (caught.value.fix or "")
    assert caught.value.exit_code == 9


@pytest.mark.integration
def test_the_cli_warm_command_exits_9_without_a_gpu():
    done = subprocess.run([sys.executable, "-m", "fa_dist", "warm", "--python", sys.executable, "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 9, done.stderr
    assert "no GPU visible to torch" in done.stderr and "fix:" in done.stderr


def _with_kernels(env, precompiled):  # type: ignore[no-untyped-def]
    from fa_dist.model.environment import ImportStatus, PackageInfo

    pkg = PackageInfo(name="fa-kernels", version="0.1.0", location="/site", import_status=ImportStatus.OK,
                      precompiled=precompiled)
    return mutate(env, packages=(*[p for p in env.packages if p.name != "fa-kernels"], pkg))


def test_doctor_says_whether_the_kernels_are_precompiled_for_this_triton_and_gpu():
    from fa_dist.decide.precompiled import check_precompiled

    h100 = mutate(H100(), triton_version="3.6.0")
    want = "triton-3.6.0 cuda:90"
    (found,) = check_precompiled(_with_kernels(h100, {want: 120}))
    assert found.severity.name == "OK" and "120 kernels" in found.evidence
    for other in ({}, {"triton-3.5.1 cuda:90": 120}, {"triton-3.6.0 cuda:80": 120}):  # another Triton / GPU
        (found,) = check_precompiled(_with_kernels(h100, other))
        assert found.severity.name == "INFO" and want in found.evidence and found.fix.startswith("fa-dist warm")
    assert list(check_precompiled(_with_kernels(CPU(), {}))) == []  # no GPU: nothing to say


def test_install_reads_the_groups_a_wheel_brought_from_the_files(tmp_path):
    from fa_dist.act.install import stored_groups

    site = tmp_path / "site"
    for name, data in {"a": {"triton": "3.6.0", "target": "cuda:90"}, "b": {"triton": "3.5.1"}, "c": "garbage"}.items():
        (site / "fa_kernels" / "_precompiled" / name).mkdir(parents=True)
        (site / "fa_kernels" / "_precompiled" / name / "manifest.json").write_text(
            json.dumps(data) if isinstance(data, dict) else data)
    assert stored_groups([site, tmp_path / "nothing"]) == {"triton-3.6.0 cuda:90"}


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable that stands where the target's python would, running ``body`` (bash)."""
    path = tmp_path / "python"
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.integration
def test_a_partly_failed_warm_returns_what_it_stored_and_relays_progress(tmp_path):
    python = _fake_python(tmp_path, """
echo "warm: 1/2 attention bfloat16 d64" >&2
echo "warm: 2/2 norm float16 n4096 prenorm FAILED: OutOfMemoryError" >&2
echo '{"group": "triton-3.6.0-cuda-90", "kernels": 3, "cases": 2, "failed": {"norm float16 n4096 prenorm": "OutOfMemoryError"}}'
exit 1
""")
    lines: list[str] = []
    result = act_warm.run(python, progress=lines.append, timeout=60)
    assert lines == ["warm: 1/2 attention bfloat16 d64", "warm: 2/2 norm float16 n4096 prenorm FAILED: OutOfMemoryError"]
    assert result.failed == {"norm float16 n4096 prenorm": "OutOfMemoryError"} and result.data["kernels"] == 3


@pytest.mark.integration
@pytest.mark.parametrize(("body", "says"), [
    ('echo \'{"error": "no GPU visible to torch"}\'; exit 2\n', "cannot precompile the Triton kernels here: no GPU"),
    ("echo 'Segmentation fault' >&2; kill -SEGV $$\n", "precompiling the Triton kernels failed (exit -11)"),
    ("sleep 30\n", "did not finish: timed out"),
])
def test_a_warm_that_cannot_run_or_dies_is_an_error_that_says_why(tmp_path, body, says):
    with pytest.raises(WarmFailed) as caught:
        act_warm.run(_fake_python(tmp_path, body), timeout=3)
    assert says in str(caught.value) and caught.value.fix
