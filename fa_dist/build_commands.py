"""`fa-dist build`: detect -> refuse early -> plan -> reuse or compile -> wheelhouse, one step each."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fa_dist import build_plan, build_run, codec, libstdcxx, recipes, stable_abi, wheelhouse
from fa_dist.environment import Environment
from fa_dist.errors import ConfigError
from fa_dist.paths import build_dir, default_wheelhouse
from fa_dist.sources import kernels_dir


def kernel_version(kernels: Path) -> str:
    text = (kernels / "fa_kernels" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise ConfigError(f"{kernels}/fa_kernels/__init__.py has no __version__")
    return match[1]


def make_plan(
    env: Environment,
    *,
    recipe_name: str,
    arch_request: str,
    jobs: int | None,
    ptx: str | None = None,
    abi: str = "auto",
) -> build_plan.BuildPlan:
    kernels = kernels_dir()
    recipe = build_plan.choose_recipe(recipe_name, env, recipes.load_all(source_root=kernels))
    build_plan.refuse_if_blocked(env, recipe)
    return build_plan.plan(
        env,
        recipe,
        arch_request=arch_request,
        jobs_override=jobs,
        kernel_version=kernel_version(kernels),
        source_digest=build_plan.source_digest(kernels),
        ptx=ptx,
        abi_request=abi,
    )


def build(
    env: Environment,
    *,
    recipe_name: str,
    arch_request: str,
    jobs: int | None,
    wheelhouse_dir: Path | None,
    clean: bool,
    plan_only: bool,
    as_json: bool,
    out: Console,
    err: Console,
    ptx: str | None = None,
    write_config: Path | None = None,
    abi: str = "auto",
) -> int:
    folder = wheelhouse_dir or default_wheelhouse()
    plan = make_plan(
        env, recipe_name=recipe_name, arch_request=arch_request, jobs=jobs, ptx=ptx, abi=abi
    )
    if write_config is not None:
        # for builds driven by another frontend (cibuildwheel): the same config, hence the same
        # wheel name and build metadata as `fa-dist build`
        if not plan.recipe.compiled:
            raise ConfigError(
                f"recipe {plan.recipe.name!r} compiles nothing: there is no build config to write"
            )
        config = build_run.build_config(plan, env, build_dir() / plan.build_key / "objects")
        write_config.write_text(json.dumps(config, indent=1) + "\n")
        out.print_json(json.dumps({"config": str(write_config), "env": plan.build_env}))
        return 0
    if plan_only:
        _report(out, plan_json(plan), as_json, title="Build plan")
        return 0
    reuse = None if clean else build_plan.reusable(plan, wheelhouse.read(folder))
    if (
        reuse is not None
        and wheelhouse.verified(folder, reuse)
        and libstdcxx.wheel_problem(folder / reuse.filename) is None
    ):
        result: dict[str, Any] = {
            "wheel": str(folder / reuse.filename),
            "reused": "wheel",
            "seconds": 0.0,
            "entry": codec.encode(reuse),
        }
        err.print(
            f"[green]reused[/] the finished wheel {reuse.filename} (same sources, same target; "
            "--clean rebuilds)"
        )
    else:
        err.print(
            f"building [bold]{plan.recipe.name}[/] {plan.version} for {plan.python_tag}"
            + (f", archs {plan.archs.torch_arch_list}" if plan.archs else "")
            + (f", MAX_JOBS={plan.jobs.max_jobs}" if plan.jobs else "")
        )
        for note in plan.notes:
            if note.startswith("C++ compiler:"):
                err.print(f"  {note}")
        done = build_run.run(
            plan, env, kernels=kernels_dir(), wheelhouse_dir=folder, clean=clean, console=err
        )
        result = {
            "wheel": str(done.wheel),
            "reused": done.reused,
            "seconds": round(done.seconds, 1),
            "log": str(done.log) if done.log else None,
            "entry": codec.encode(done.entry),
        }
    result["plan"] = plan_json(plan)
    _report(out, result, as_json, title="Built")
    return 0


def plan_json(plan: build_plan.BuildPlan) -> dict[str, Any]:
    return {
        "recipe": plan.recipe.name,
        "kind": plan.recipe.kind.value,
        "python": plan.python,
        "python_tag": plan.python_tag,
        "version": plan.version,
        "variant": str(plan.variant) if plan.variant else None,
        "abi": plan.abi.value if plan.abi else None,
        "serves": stable_abi.serves(plan.variant) if plan.variant else "any torch (pure Triton)",
        "archs": [str(a) for a in plan.archs.archs] if plan.archs else [],
        "ptx": str(plan.archs.ptx) if plan.archs and plan.archs.ptx else None,
        "max_jobs": plan.jobs.max_jobs if plan.jobs else None,
        "nvcc_threads": plan.jobs.nvcc_threads if plan.jobs else None,
        "jobs_reason": plan.jobs.reason if plan.jobs else None,
        "build_env": plan.build_env,
        "source_digest": plan.source_digest,
        "notes": list(plan.notes),
    }


def _report(out: Console, data: dict[str, Any], as_json: bool, *, title: str) -> None:
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        if key in ("entry", "plan"):
            continue
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    out.print(table)
