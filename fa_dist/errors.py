"""Every error fa-dist raises, each with its exit code. ``main()`` catches FaDistError, prints its
message and fix, and exits with the code (docs: the exit codes in README.md)."""

from __future__ import annotations


class FaDistError(Exception):
    """A failure fa-dist can explain. Subclasses set the exit code."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class ParseError(FaDistError, ValueError):
    """Text that should name a version, arch or tag does not."""

    exit_code = 2


class ConfigError(FaDistError):
    """Bad user input: a flag, a snapshot file, a recipe, matrix.yaml."""

    exit_code = 2


class EnvironmentBroken(FaDistError):
    """The target environment cannot run the kernels as it stands (doctor found errors)."""

    exit_code = 3


class ProbeFailed(FaDistError):
    """The target interpreter could not be asked about itself."""

    exit_code = 4


class BuildFailed(FaDistError):
    """Compiling or packaging the kernels failed; the message names the cause found in the log."""

    exit_code = 5


class SmokeFailed(FaDistError):
    """The smoke test could not run to the end in the target interpreter."""

    exit_code = 6


class NoMatchingWheel(FaDistError):
    """No wheel fits this machine, and none may or can be built."""

    exit_code = 7


class InstallFailed(FaDistError):
    """Installing (fetch, pip, smoke test, record) failed; the previous state was restored."""

    exit_code = 8


class WarmFailed(FaDistError):
    """Precompiling the Triton kernels failed or cannot run here; the kernels still compile on first use."""

    exit_code = 9
