"""How many nvcc jobs a build can run at once without the kernel's OOM killer stepping in."""

from __future__ import annotations

from dataclasses import dataclass

from fa_dist.decide.knowledge import NVCC_JOB_PEAK_MIB


@dataclass(frozen=True, kw_only=True)
class JobPlan:
    max_jobs: int
    nvcc_threads: int
    reason: str


def recommend(
    *,
    cpus: int,
    mem_available_mib: int | None,
    nvcc_threads: int = 2,
    job_peak_mib: int = NVCC_JOB_PEAK_MIB,
) -> JobPlan:
    """min(cpus / nvcc_threads, available RAM / (peak per job x threads)), at least 1.

    Each nvcc job runs ``nvcc_threads`` device passes at once, each peaking near ``job_peak_mib``.
    """
    nvcc_threads = max(1, nvcc_threads)
    by_cpu = max(1, cpus // nvcc_threads)
    if mem_available_mib is None:
        return JobPlan(
            max_jobs=min(by_cpu, 2),
            nvcc_threads=nvcc_threads,
            reason="available memory unknown: 2 jobs at most to stay safe",
        )
    by_mem = max(1, mem_available_mib // (job_peak_mib * nvcc_threads))
    jobs = min(by_cpu, by_mem)
    limit = "memory" if by_mem < by_cpu else "cores"
    return JobPlan(
        max_jobs=jobs,
        nvcc_threads=nvcc_threads,
        reason=(
            f"{cpus} cores / {nvcc_threads} nvcc threads = {by_cpu}; "
            f"{mem_available_mib / 1024:.0f} GiB free / ({job_peak_mib / 1024:.0f} GiB x "
            f"{nvcc_threads}) = {by_mem}; limited by {limit}"
        ),
    )


def ninja_default_jobs(cpus: int) -> int:
    """What ninja runs when MAX_JOBS is unset (ninja's own default: cores + 2)."""
    return cpus + 2 if cpus > 1 else 2
