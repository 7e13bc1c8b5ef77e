"""fa_kernels.precompiled: Triton cache entries made ahead of time, stored as groups, copied into Triton's
cache only for this Triton and these GPUs, found by Triton under its own key.

The end-to-end cases compile a real kernel with the installed Triton for a CUDA target (no GPU is needed
to compile, only to run), in subprocesses whose TRITON_CACHE_DIR is a test folder, and read Triton's own
compilation listener to see whether it compiled or loaded from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fa_kernels import precompiled

triton = pytest.importorskip("triton")

COMPILE = textwrap.dedent("""
    import json, sys
    import triton, triton.language as tl
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    @triton.jit
    def add_one(X, Y, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(Y + i, tl.load(X + i, mask=i < n) + 1, mask=i < n)

    hits = []
    knobs.compilation.listener = lambda **kw: hits.append(kw["cache_hit"])
    src = ASTSource(add_one, signature={"X": "*fp32", "Y": "*fp32", "n": "i32", "BLOCK": "constexpr"},
                    constexprs={"BLOCK": 128})
    kernel = triton.compile(src, target=GPUTarget("cuda", int(sys.argv[1]), 32))
    print(json.dumps({"hash": kernel.hash, "cache_hit": hits[-1], "cubin": len(kernel.asm["cubin"])}))
""")


def compile_into(cache: Path, arch: int = 90) -> dict[str, object]:
    """Compile the kernel in a fresh process whose Triton cache is ``cache`` -> its hash, whether Triton
    loaded it from the cache, and its cubin's size."""
    script = cache.parent / "compile_add_one.py"  # Triton reads a kernel's source from its file
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(COMPILE)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(cache)
    proc = subprocess.run([sys.executable, str(script), str(arch)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A store with one group (this Triton, cuda:90) made from a real compile."""
    root = tmp_path_factory.mktemp("made")
    first = compile_into(root / "warm-cache")
    assert first["cache_hit"] is False
    store = root / "store"
    store.mkdir()
    precompiled.write_group(store, root / "warm-cache", triton.__version__, "cuda:90", "test", ["add_one"])
    return store, first


@pytest.mark.integration  # real Triton compiles in subprocesses
def test_a_seeded_cache_loads_the_kernel_instead_of_compiling_it(made, tmp_path):
    store, first = made
    (group,) = precompiled.read_groups(store)
    assert group.target == "cuda:90" and len(group.entries) == 1
    assert precompiled.seed(group, tmp_path / "cache") == 1
    index = next((tmp_path / "cache" / group.entries[0]).glob("__grp__*.json"))
    paths = json.loads(index.read_text())["child_paths"].values()
    # only the index is written: it points at the store's files, nothing is copied
    assert all(Path(p).parent == (group.path / group.entries[0]).resolve() and Path(p).exists() for p in paths)
    assert [f.name for f in (tmp_path / "cache" / group.entries[0]).iterdir()] == [index.name]
    again = compile_into(tmp_path / "cache")
    assert again["cache_hit"] is True and again["hash"] == first["hash"] and again["cubin"] == first["cubin"]
    assert precompiled.seed(group, tmp_path / "cache") == 0  # present already: nothing added


@pytest.mark.integration  # real Triton compiles in subprocesses
def test_without_the_store_triton_compiles_as_if_nothing_was_seeded(made, tmp_path):
    store, first = made
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (group,) = precompiled.read_groups(copy)
    precompiled.seed(group, tmp_path / "cache")
    shutil.rmtree(copy)  # the package was uninstalled: the seeded index points at nothing
    again = compile_into(tmp_path / "cache")
    assert again["cache_hit"] is False and again["hash"] == first["hash"]


@pytest.mark.integration  # real Triton compiles in subprocesses
def test_an_entry_for_another_gpu_arch_is_never_used(made, tmp_path):
    store, _first = made
    (group,) = precompiled.read_groups(store)
    precompiled.seed(group, tmp_path / "cache")  # even copied in by hand, an sm_90 entry ...
    other = compile_into(tmp_path / "cache", arch=80)  # ... is not what an sm_80 compile looks up
    assert other["cache_hit"] is False


@pytest.mark.integration  # real Triton compiles in subprocesses
def test_only_groups_of_this_triton_are_seeded(made, tmp_path, monkeypatch):
    store, _first = made
    (group,) = precompiled.read_groups(store)
    manifest = json.loads((group.path / precompiled.MANIFEST).read_text())
    for name, triton_version, target in [("other-triton", "0.0.1", "cuda:90"), ("other-gpu", triton.__version__, "cuda:80")]:
        (store / name).mkdir()
        for entry in group.entries:  # the same files, claimed for another Triton / GPU
            (store / name / entry).symlink_to(group.path / entry)
        (store / name / precompiled.MANIFEST).write_text(json.dumps({**manifest, "triton": triton_version, "target": target}))
    groups = precompiled.read_groups(store)
    assert [g.name for g in precompiled.matching(groups, triton.__version__, ["cuda:90"])] == [group.name]
    assert precompiled.matching(groups, triton.__version__, ["cuda:89"]) == []
    assert {g.name for g in precompiled.matching(groups, "0.0.1", ["cuda:90"])} == {"other-triton"}

    cache = tmp_path / "cache"
    monkeypatch.setattr(precompiled, "triton_cache_dir", lambda: cache)
    monkeypatch.setattr(precompiled, "read_groups", lambda store=None: groups)
    monkeypatch.setattr(precompiled, "visible_targets", lambda: pytest.fail("seeding asked torch for the GPUs"))
    precompiled._seed_here()  # every group of this Triton (an entry for another GPU is never looked up)
    names = {p.name for p in cache.iterdir()}
    stamps = {n for n in names if n.endswith(".seeded")}
    assert names == {*group.entries, *stamps}
    assert {n.rsplit("-", 2)[0] for n in stamps} == {f"fa_kernels-{g.name}" for g in groups if g.triton == triton.__version__}
    assert not any("other-triton" in p.name for p in cache.iterdir())


def test_a_broken_store_is_no_store(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / precompiled.MANIFEST).write_text("{not json")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / precompiled.MANIFEST).write_text(json.dumps({"format": 99, "triton": "x", "target": "y", "entries": []}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / precompiled.MANIFEST).write_text(json.dumps({"format": 1, "triton": "x"}))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / precompiled.MANIFEST).write_text(json.dumps(
        {"format": 1, "triton": "x", "target": "cuda:90", "entries": ["../../etc", "zz"]}))
    groups = precompiled.read_groups(tmp_path)
    assert [g.name for g in groups] == ["d"]
    assert precompiled.seed(groups[0], tmp_path / "cache") == 0  # names that are no cache entry are skipped
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    assert precompiled.read_groups(tmp_path / "missing") == []


def test_seeding_never_raises_and_runs_once(monkeypatch):
    monkeypatch.setattr(precompiled, "_seeded", False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    calls = []

    def broken() -> None:
        calls.append(1)
        raise OSError("read-only cache folder")

    monkeypatch.setattr(precompiled, "_seed_here", broken)
    precompiled.ensure_seeded()
    precompiled.ensure_seeded()
    assert calls == [1]


def test_the_switch_turns_seeding_off(monkeypatch):
    monkeypatch.setattr(precompiled, "_seeded", False)
    monkeypatch.setenv(precompiled.ENV_SWITCH, "0")
    monkeypatch.setattr(precompiled, "_seed_here", lambda: pytest.fail("seeded although switched off"))
    precompiled.ensure_seeded()


def test_a_damaged_entry_is_not_seeded(tmp_path):
    good, bad, missing = "A" * 52, "B" * 52, "C" * 52
    store = tmp_path / "store" / "g"
    for entry, children in ((good, ["k.json", "k.cubin"]), (bad, ["../../etc/passwd"]), (missing, ["gone.cubin"])):
        (store / entry).mkdir(parents=True)
        for name in children:
            if "/" not in name and name != "gone.cubin":
                (store / entry / name).write_bytes(b"x")
        (store / entry / "__grp__k.json").write_text(json.dumps({"child_paths": {n: n for n in children}}))
    (store / precompiled.MANIFEST).write_text(json.dumps(
        {"format": 1, "triton": "t", "target": "cuda:90", "entries": [good, bad, missing]}))
    (group,) = precompiled.read_groups(tmp_path / "store")
    assert precompiled.seed(group, tmp_path / "cache") == 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [good]


BUILD_MODULE = textwrap.dedent("""
    import json
    from triton.runtime import build
    built = []
    real_build = build._build
    build._build = lambda *a, **kw: built.append(a[0]) or real_build(*a, **kw)
    SRC = '''
    #include <Python.h>
    static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "fa_probe_mod", NULL, -1, NULL};
    PyMODINIT_FUNC PyInit_fa_probe_mod(void) { PyObject *m = PyModule_Create(&def);
        PyModule_AddIntConstant(m, "answer", 42); return m; }
    '''
    mod = build.compile_module_from_src(SRC, "fa_probe_mod")
    print(json.dumps({"built": built, "answer": mod.answer, "file": mod.__file__}))
""")


def build_module_into(cache: Path) -> dict[str, object]:
    """Have Triton build (or load from ``cache``) a host module the way it builds a kernel's launcher."""
    env = {**os.environ, "TRITON_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", BUILD_MODULE], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.integration  # a real host-compiler build by Triton in subprocesses
def test_launchers_are_stored_and_copied_so_triton_builds_none(tmp_path):
    first = build_module_into(tmp_path / "warm-cache")
    assert first["built"] == ["fa_probe_mod"] and first["answer"] == 42
    store = tmp_path / "store"
    store.mkdir()
    group = precompiled.write_group(store, tmp_path / "warm-cache", "t", "cuda:90", "test", [])
    assert len(group.modules) == 1 and group.entries == ()
    assert precompiled.seed(group, tmp_path / "cache") == 1
    again = build_module_into(tmp_path / "cache")
    assert again["built"] == [] and again["answer"] == 42  # loaded from the seeded copy, no compiler run
    stored = next((group.path / group.modules[0]).iterdir())
    seeded = Path(str(again["file"]))
    assert not seeded.is_symlink() and seeded.read_bytes() == stored.read_bytes()
    assert precompiled.seed(group, tmp_path / "cache") == 0
    stored.write_bytes(b"changed later")  # the store changing after seeding reaches no process
    assert build_module_into(tmp_path / "cache")["answer"] == 42


def test_a_module_is_copied_only_from_a_trusted_plain_file(tmp_path):
    name = "a" * 64
    store = tmp_path / "store" / "g"
    (store / name).mkdir(parents=True)
    module = store / name / "m.cpython-311-x86_64-linux-gnu.so"
    module.write_bytes(b"\x7fELF")
    module.chmod(0o666)  # anyone may change it: not taken
    outside = tmp_path / "outside" / ("b" * 64)
    outside.mkdir(parents=True)
    (outside / "m.so").write_bytes(b"\x7fELF")
    (store / ("b" * 64)).symlink_to(outside)  # an entry that is a link out of the store: not taken
    (store / precompiled.MANIFEST).write_text(json.dumps(
        {"format": 1, "triton": "t", "target": "cuda:90", "entries": [], "modules": [name, "b" * 64]}))
    (group,) = precompiled.read_groups(tmp_path / "store")
    assert precompiled.seed(group, tmp_path / "cache") == 0
    module.chmod(0o644)
    assert precompiled.seed(group, tmp_path / "cache") == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [name]


def test_a_module_entry_is_one_shared_object(tmp_path):
    for name, files in (("one", ["m.cpython-311-x86_64-linux-gnu.so"]), ("two", ["a.so", "b.so"]),
                        ("text", ["m.json"]), ("tmp", ["m.so.tmp.pid_1_2"]), ("empty", [])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_bytes(b"x")
    assert precompiled.module_file(tmp_path / "one") == tmp_path / "one" / "m.cpython-311-x86_64-linux-gnu.so"
    assert [precompiled.module_file(tmp_path / n) for n in ("two", "text", "tmp", "empty", "missing")] == [None] * 5


GPU_RUN = textwrap.dedent("""
    import json, sys, torch, fa_kernels
    from triton.runtime import build
    built = []  # host modules (launchers) Triton builds with the C compiler in this process
    real_build = build._build
    build._build = lambda *a, **kw: built.append(a[0]) or real_build(*a, **kw)
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 333, 8, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in "qkv")
    out = fa_kernels.flash_attn_func(q, k, v, causal=True, backend="triton")
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    print(json.dumps({"sums": [float(t.double().abs().sum()) for t in (out, *grads)], "built": built}))
""")


@pytest.mark.gpu
def test_gpu_precompiled_kernels_give_the_jit_results_bit_for_bit(tmp_path):
    """Warm into a private store, then the same call in fresh processes: once JIT-compiled (store off,
    empty cache), once from the store (empty cache seeded): identical outputs and gradients."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    store = tmp_path / "store"
    warm = subprocess.run([sys.executable, "-m", "fa_kernels.warm", "--json", "--store", str(store), "--no-seed",
                           "--no-record", "--head-dims", "128", "--jobs", "4"],
                          capture_output=True, text=True, env={**env, "TRITON_CACHE_DIR": str(tmp_path / "w")},
                          timeout=900, check=False)
    assert warm.returncode == 0, warm.stderr[-2000:]
    results = []
    for name, switch in (("jit", "0"), ("precompiled", "1")):
        run_env = {**env, "TRITON_CACHE_DIR": str(tmp_path / name), precompiled.ENV_SWITCH: switch,
                   precompiled.ENV_DIR: str(store)}
        done = subprocess.run([sys.executable, "-c", GPU_RUN], capture_output=True, text=True, env=run_env,
                              timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    jit, seeded = results
    assert jit["sums"] == seeded["sums"]
    assert any((tmp_path / "precompiled").glob("*/__grp__*.json"))  # the second run was seeded
    assert jit["built"] and seeded["built"] == []  # ... and built no launcher of its own


def test_another_store_can_be_named(tmp_path, monkeypatch):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / precompiled.MANIFEST).write_text(json.dumps(
        {"format": 1, "triton": "3.6.0", "target": "cuda:90", "entries": []}))
    monkeypatch.setenv(precompiled.ENV_DIR, str(tmp_path))
    assert precompiled.store_dir() == tmp_path
    assert [g.name for g in precompiled.read_groups()] == ["g"]
    monkeypatch.delenv(precompiled.ENV_DIR)
    assert precompiled.store_dir() == precompiled.STORE


def test_warm_covers_the_install_smoke_test_and_labels_each_case_once():
    from fa_kernels import warm

    todo = warm.cases()
    labels = [c.label for c in todo]
    assert len(set(labels)) == len(labels)
    assert "smoke --quick" in labels  # what fa-dist install runs first, compiled ahead too
    assert {c.op for c in todo} == {"attention", "varlen", "decode", "norm", "smoke"}
    assert {c.head_dim for c in warm.cases((64,)) if c.head_dim} == {64}
