"""Developer tasks. `nox -s lint tests` is what CI runs (see .ci/run and the README)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# torch for the tests: the CPU build is enough (GPU tests are skipped without a GPU), and the
# triton it would pin on Linux CUDA wheels gives the kernels' CPU interpreter.
TEST_TORCH = ("torch==2.13.0", "triton==3.7.1", "numpy")
# `fa-dist build` runs the target's pip without build isolation: the test env needs the build backend
BUILD_BACKEND = ("setuptools>=68", "wheel")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (style, imports, bugbear) and mypy --strict over fa_dist and kernels/fa_kernels."""
    # torch's own annotations are what checks fa_kernels' calls into it (without torch installed every
    # tensor would be Any); the CPU build is the one the tests session installs anyway
    session.install(*TEST_TORCH)
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", "fa_dist")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole CPU test suite; GPU tests are skipped where no GPU is visible."""
    session.install(*TEST_TORCH, *BUILD_BACKEND)
    session.install("-e", ".[test]", "-e", "./kernels")
    session.run("pytest", *(session.posargs or ["-q"]), env={"NO_COLOR": "1"})


@nox.session
def build(session: nox.Session) -> None:
    """A wheel for this environment (pure-Triton unless a CUDA torch is installed here): fa-dist build."""
    session.install(*TEST_TORCH, *BUILD_BACKEND, "ninja")
    session.install("-e", ".")
    session.run("fa-dist", "build", *(session.posargs or []))


@nox.session
def matrix(session: nox.Session) -> None:
    """Print the wheel matrix (pass --format github or --only torch=2.11,cuda=13.0 after --)."""
    session.install("-e", ".")
    session.run("fa-dist", "matrix", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """On a GPU machine, in its own torch environment: the GPU correctness suite, then the benchmarks."""
    session.run("python", "-m", "pytest", "-q", "-m", "gpu", "tests/kernels", *session.posargs)
    session.run("python", "benchmarks/bench_attention.py")
    session.run("python", "benchmarks/bench_norm.py")
    session.run("python", "benchmarks/bench_decode.py")
