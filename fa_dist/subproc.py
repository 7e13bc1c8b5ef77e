"""The one way fa-dist runs programs: echo at debug level, capture, time out, never raise on exit."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

log = logging.getLogger("fa_dist")


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int | None  # None: could not start or timed out
    stdout: str
    stderr: str
    error: str | None = None  # why it did not run to completion

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe_failure(self) -> str:
        """One line for a finding's evidence: the command and how it ended."""
        cmd = shlex.join(self.argv)
        if self.error:
            return f"`{cmd}`: {self.error}"
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        return f"`{cmd}` exited {self.returncode}" + (f": {' | '.join(tail)}" if tail else "")


def run(
    argv: Sequence[str],
    *,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Completed:
    """Run ``argv`` and capture its output. Never raises for a missing program or a timeout."""
    args = tuple(str(a) for a in argv)
    log.debug("$ %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return Completed(args, None, "", "", error="not found")
    except PermissionError:
        return Completed(args, None, "", "", error="not executable")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return Completed(args, None, out, "", error=f"timed out after {timeout:.0f}s")
    except OSError as exc:
        return Completed(args, None, "", "", error=exc.strerror or str(exc))
    if proc.returncode != 0:
        log.debug("exit %s\n%s%s", proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return Completed(args, proc.returncode, proc.stdout, proc.stderr)


def stream(
    argv: Sequence[str],
    *,
    timeout: float,
    on_stderr: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Completed:
    """Like ``run``, but hands each stderr line to ``on_stderr`` as it comes, and kills the program
    (its whole process group) at the deadline or when fa-dist itself is interrupted."""
    proc = start(argv, env=env, cwd=cwd)
    if isinstance(proc, Completed):
        return proc
    return follow(proc, timeout=timeout, on_stderr=on_stderr)


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: bool = False,
) -> subprocess.Popen[str] | Completed:
    """Start a program in its own process group (a Ctrl-C reaches fa-dist, which then stops it), its
    output piped, its standard input a pipe when ``stdin``; -> the process, or a Completed saying why
    it could not start. ``follow`` waits for it."""
    args = tuple(str(a) for a in argv)
    log.debug("$ %s", shlex.join(args))
    try:
        return subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return Completed(args, None, "", "", error=exc.strerror or str(exc))


def follow(
    proc: subprocess.Popen[str],
    *,
    timeout: float,
    on_stderr: Callable[[str], None] | None = None,
) -> Completed:
    """Collect a started program's output (each stderr line to ``on_stderr`` as it comes) until it
    ends; kill its process group at the deadline or when fa-dist itself is interrupted."""
    args = (
        tuple(str(a) for a in proc.args)
        if isinstance(proc.args, (list, tuple))
        else (str(proc.args),)
    )
    out: list[str] = []
    err: list[str] = []

    def pump(pipe: IO[str], into: list[str], each: Callable[[str], None] | None) -> None:
        for line in pipe:
            into.append(line)
            if each is not None:
                each(line.rstrip("\n"))

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, out, None), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err, on_stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        for reader in readers:
            reader.join(timeout=5)
        return Completed(
            args, None, "".join(out), "".join(err), error=f"timed out after {timeout:.0f}s"
        )
    except BaseException:
        kill(proc)
        raise
    for reader in readers:
        reader.join(timeout=5)
    return Completed(args, proc.returncode, "".join(out), "".join(err))


def kill(proc: subprocess.Popen[str]) -> None:
    """Kill a started program's whole process group."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def which(name: str, path: str | None = None) -> str | None:
    """shutil.which, but honouring an explicit PATH string (fixtures put fake tools first)."""
    import shutil

    return shutil.which(name, path=path if path is not None else os.environ.get("PATH"))
