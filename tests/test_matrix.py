"""matrix.yaml, `fa-dist matrix`, the wheels workflow and cibuildwheel's view of the same cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fa_dist.decide import matrix, recipes
from fa_dist.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"


def committed() -> dict:  # type: ignore[type-arg]
    return matrix.load(ROOT / "matrix.yaml")


def test_committed_matrix_collapses_to_one_stable_abi_wheel_per_cuda_major_and_platform() -> None:
    data = committed()
    matrix.check_against_recipes(data, {n: r.archs for n, r in recipes.load_all().items()})
    matrix.check_stable_target(data, {n: r.stable_abi_target for n, r in recipes.load_all().items()})
    exp = matrix.expand(data)
    assert len(exp.cells) == 7 and exp.pure_triton_wheel  # <= 8 compiled cells for torch 2.10-2.14
    assert exp.uncollapsed == 128  # torch x Python x runtime x platform, one wheel each
    assert {c.torches for c in exp.cells if c.runtime == "cu130"} == {"2.10 2.11 2.12 2.13 2.14"}
    assert exp.pruned == {"no rocm 7.0 build of torch for manylinux_aarch64": 1,
                          "no rocm 7.1 build of torch for manylinux_aarch64": 3,
                          "no rocm 7.2 build of torch for manylinux_aarch64": 2}
    ids = [c.id for c in exp.cells]
    assert len(set(ids)) == len(ids) and {c.abi for c in exp.cells} == {"stable"}
    cell = next(c for c in exp.cells if c.id == "manylinux_x86_64-cu130torch2.10stableabi")
    # built with the oldest minor and torch of its group, on the oldest Python: the wheel is abi3
    assert (cell.torch, cell.runtime, cell.python, cell.cibw_build) == ("2.10", "cu130", "3.10", "cp310-manylinux_x86_64")
    assert cell.runtimes == "13.0 13.2" and cell.pythons == "3.10 3.11 3.12 3.13" and cell.archs.endswith("12.0+PTX")
    assert cell.build_args == "--recipe cuda --arch sm_80,sm_86,sm_89,sm_90,sm_100,sm_120 --ptx sm_120 --abi stable"
    cu12 = next(c for c in exp.cells if c.id == "manylinux_x86_64-cu126torch2.10stableabi")
    assert cu12.runtimes == "12.6 12.8" and cu12.toolkit == "cuda-toolkit-12-6"  # 12.6 serves 12.8 too
    rocm72 = next(c for c in exp.cells if c.runtime == "rocm7.2")
    assert rocm72.torch == "2.11" and rocm72.variant == "rocm7.2torch2.10stableabi"  # ROCm minors are exact


def test_torches_older_than_the_target_and_runtimes_left_out_get_a_wheel_per_torch() -> None:
    data = committed()
    data["torch"]["2.9"] = {"cuda": ["12.6"]}
    data["stable_abi"] = {"target": "2.10", "runtimes": ["cuda"]}
    exp = matrix.expand(data)
    per_torch = sorted(c.id for c in exp.cells if c.abi == "torch")
    assert "manylinux_x86_64-cu126torch2.9cxx11abiTRUE" in per_torch
    assert "manylinux_x86_64-rocm7.1torch2.12cxx11abiTRUE" in per_torch
    assert len(per_torch) == 2 + 6  # 2.9 cu126 on two platforms, six (torch, ROCm) pairs
    old = next(c for c in exp.cells if c.torch == "2.9")
    assert old.build_args.endswith("--abi torch") and old.torches == "2.9"
    del data["stable_abi"]
    assert len(matrix.expand(data).cells) == 32 + 2  # every published build, one abi3 wheel each


def test_only_slices_by_what_a_cell_serves() -> None:
    exp = matrix.expand(committed(), matrix.parse_only("torch=2.12,cuda=13.2"))
    assert [c.id for c in exp.cells] == ["manylinux_aarch64-cu130torch2.10stableabi",
                                         "manylinux_x86_64-cu130torch2.10stableabi"]
    assert not matrix.expand(committed(), matrix.parse_only("torch=2.14,rocm=7.2")).cells
    with pytest.raises(ConfigError, match="expected key=value"):
        matrix.parse_only("gpu=h100")


BASE = (ROOT / "matrix.yaml").read_text()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("platforms: [manylinux_x86_64, manylinux_aarch64]\nmanylinux_image",
                         "platfroms: [manylinux_x86_64]\nmanylinux_image"), ":10: platfroms: unknown key (did you mean 'platforms'?)"),
    (lambda t: t.replace("archs: [sm_80, sm_86, sm_89, sm_90]", "archs: [sm_80, sm_120]"), "nvcc 12.6 cannot build sm_120"),
    (lambda t: t.replace('cuda: ["12.6", "12.8", "13.0"]\n    rocm: ["7.0", "7.1"]', 'cuda: ["12.4"]\n    rocm: ["7.0", "7.1"]'),
     "CUDA 12.4 has no entry under cuda:"),
    (lambda t: t.replace('target: "2.10"', 'target: "two"'), "stable_abi.target: not a torch version"),
    (lambda t: t.replace("runtimes: [cuda, rocm]", "runtimes: [cuda, metal]"), "'metal' is not cuda or rocm"),
    (lambda t: t.replace("version: 1", "version: 2"), "version: expected 1"),
    (lambda t: t.replace("pure_triton_wheel: true", "pure_triton_wheel: yes please"), "expected a bool"),
])
def test_validation_names_line_key_and_expectation(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "matrix.yaml"
    path.write_text(edit(BASE))
    with pytest.raises(ConfigError) as err:
        matrix.load(path)
    assert message in err.value.message and str(path) in err.value.message


def fa_dist(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fa_dist", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}, cwd=cwd)


@pytest.mark.integration
def test_matrix_reads_the_current_folder_or_file_and_names_the_fix(tmp_path: Path) -> None:
    missing = fa_dist("matrix", cwd=tmp_path)
    assert missing.returncode == 2
    assert f"no matrix file at {tmp_path / 'matrix.yaml'}" in missing.stderr
    assert "fix: run fa-dist matrix in the folder that holds matrix.yaml" in missing.stderr
    given = fa_dist("matrix", "--file", str(ROOT / "matrix.yaml"), "--format", "github", cwd=tmp_path)
    here = fa_dist("matrix", "--format", "github")  # the checkout's root: ./matrix.yaml
    assert given.returncode == 0 and json.loads(given.stdout)["include"]
    assert json.loads(given.stdout) == json.loads(here.stdout)


@pytest.mark.integration
def test_github_json_has_every_key_the_workflow_reads() -> None:
    done = fa_dist("matrix", "--format", "github")
    assert done.returncode == 0, done.stderr
    cells = json.loads(done.stdout)["include"]
    assert len(cells) == 7
    used = set(re.findall(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", WORKFLOW.read_text()))
    assert used and all(used <= set(c) for c in cells), used - set(cells[0])
    table = fa_dist("matrix", "--only", "torch=2.10,python=3.13")
    assert "6 compiled wheels (cp310-abi3; one per torch x Python x runtime x platform would be 128) + 1 " \
           "pure-Triton wheel = 7 wheels" in table.stdout  # ROCm 7.2 came with torch 2.11


def test_workflow_parses_and_references_only_what_exists() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert set(flow["jobs"]) == {"matrix", "compiled", "pure", "index"}
    assert flow["jobs"]["index"]["needs"] == ["compiled", "pure"]
    text = WORKFLOW.read_text() + (ROOT / "kernels" / "pyproject.toml").read_text()
    for script in set(re.findall(r"tools/ci/[\w.]+", text)):
        assert (ROOT / script).is_file(), script
    from fa_dist.cli import cli

    for command in set(re.findall(r"fa-dist (\w+)", WORKFLOW.read_text())):
        assert command in cli.commands, command


@pytest.mark.integration
def test_cibuildwheel_identifiers_match_the_matrix() -> None:
    cells = matrix.expand(committed()).cells
    for arch in ("x86_64", "aarch64"):
        wanted = sorted({c.cibw_build for c in cells if c.cibw_archs == arch})
        done = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform",
                               "linux", "--archs", arch], cwd=ROOT / "kernels", capture_output=True, text=True,
                              timeout=120, env={**os.environ, "CIBW_BUILD": " ".join(wanted)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(done.stdout.split()) == wanted


def test_a_stable_target_other_than_the_recipes_is_an_error() -> None:
    data = committed()
    targets = {n: r.stable_abi_target for n, r in recipes.load_all().items()}
    matrix.check_stable_target(data, targets)
    data["stable_abi"]["target"] = "2.11"
    with pytest.raises(ConfigError, match=r"stable_abi\.target is 2\.11, recipes/cuda\.toml builds"):
        matrix.check_stable_target(data, targets)
