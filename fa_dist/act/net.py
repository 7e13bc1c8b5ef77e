"""The network policy and the one way fa-dist downloads anything (index manifests, wheels).

Policy, checked on every request and again on every redirect hop: the scheme (case-insensitive) is
https or file, or http to a loopback address, where "loopback" is decided on the parsed IP address
(``localhost`` counts when every address it resolves to is loopback), never on how the name starts.
Every transfer has a size cap (the manifest's size when known, else a maximum) and a total deadline.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from fa_dist.errors import ConfigError, FaDistError

MAX_WHEEL_BYTES = 4 << 30  # no compiled wheel comes near this; an endless response stops here
MAX_MANIFEST_BYTES = 32 << 20
DEFAULT_DEADLINE_S = 3600.0


class PolicyRefused(ConfigError):
    """A URL (or a redirect's target) the network policy does not allow."""


class DownloadFailed(FaDistError):
    exit_code = 8


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a URL's hostname) is a loopback address, judged on the parsed IP."""
    host = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host.rstrip(".") != "localhost":
            return False
        try:
            found = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(found) and all(is_loopback(str(info[4][0]).split("%")[0]) for info in found)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def check(url: str, *, allow_insecure_http: bool = False) -> None:
    """Refuse (PolicyRefused) a URL the policy does not allow; see the module docstring."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise PolicyRefused(f"{url!r} is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("https", "file"):
        return
    if scheme == "http":
        if allow_insecure_http or is_loopback(host):
            return
        raise PolicyRefused(
            f"{url} is plain http to a non-local host",
            fix="use https, or pass --allow-insecure-http if you trust the network",
        )
    raise PolicyRefused(
        f"{url}: the scheme {scheme or '(none)'!r} is not allowed "
        "(https, file, or http to a loopback address)"
    )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL the policy allows (urllib would follow http and ftp)."""

    def __init__(self, allow_insecure_http: bool) -> None:
        self.allow_insecure_http = allow_insecure_http

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        check(newurl, allow_insecure_http=self.allow_insecure_http)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_bytes: int
    exact_size: int | None = None  # the manifest's size: more or fewer bytes is an error
    deadline_s: float = DEFAULT_DEADLINE_S  # for the whole transfer
    read_timeout_s: float = 60.0  # for one read (connect included)

    @classmethod
    def from_env(cls, *, max_bytes: int, exact_size: int | None = None) -> Limits:
        """FA_DIST_TIMEOUT (seconds per read) and FA_DIST_DEADLINE (seconds per transfer)."""
        return cls(
            max_bytes=exact_size if exact_size is not None else max_bytes,
            exact_size=exact_size,
            deadline_s=_seconds("FA_DIST_DEADLINE", DEFAULT_DEADLINE_S),
            read_timeout_s=_seconds("FA_DIST_TIMEOUT", 60.0),
        )


def _seconds(var: str, default: float) -> float:
    text = os.environ.get(var)
    try:
        value = float(text) if text else default
    except ValueError:
        raise ConfigError(f"{var}={text!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{var}={text!r} must be a positive number of seconds")
    return value


def download(
    url: str,
    sink: IO[bytes],
    limits: Limits,
    *,
    allow_insecure_http: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy ``url`` into ``sink`` under the policy and ``limits``; the number of bytes written.
    Raises PolicyRefused or DownloadFailed, never a bare network exception."""
    check(url, allow_insecure_http=allow_insecure_http)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_insecure_http))
    stop = time.monotonic() + limits.deadline_s
    try:
        with opener.open(url, timeout=min(limits.read_timeout_s, limits.deadline_s)) as resp:
            done = _copy(url, resp, sink, limits, stop, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DownloadFailed(
            f"cannot download {url}: {exc or type(exc).__name__}",
            fix="check the index, or raise FA_DIST_TIMEOUT (seconds) for a slow server",
        ) from None
    if limits.exact_size is not None and done != limits.exact_size:
        raise DownloadFailed(
            f"{url}: got {done} bytes, the manifest says {limits.exact_size}",
            fix="the file changed or was corrupted in transit: rebuild or republish it",
        )
    return done


def _copy(
    url: str,
    resp: Any,
    sink: IO[bytes],
    limits: Limits,
    stop: float,
    progress: Callable[[int, int], None] | None,
) -> int:
    announced = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
    total = int(announced) if announced and str(announced).isdigit() else 0
    if total > limits.max_bytes:
        raise DownloadFailed(
            f"{url} announces {total} bytes, more than the {limits.max_bytes} allowed"
        )
    done = 0
    read = getattr(resp, "read1", resp.read)  # read1: what has arrived, so the deadline is seen
    while block := read(min(1 << 20, limits.max_bytes + 1 - done)):
        done += len(block)
        if done > limits.max_bytes:
            raise DownloadFailed(
                f"{url} sent more than the {limits.max_bytes} bytes allowed",
                fix="the server sends more than the manifest says: do not trust it",
            )
        if time.monotonic() > stop:
            raise DownloadFailed(
                f"{url}: not done after {limits.deadline_s:.0f} s ({done} bytes so far)",
                fix="raise FA_DIST_DEADLINE (seconds) for a slow connection",
            )
        sink.write(block)
        if progress:
            progress(done, total)
    if total and done != total:
        raise DownloadFailed(
            f"download of {url} ended after {done} of {total} bytes",
            fix="the server stopped mid-transfer: run the install again",
        )
    return done


def read_bytes(url: str, *, allow_insecure_http: bool = False) -> bytes:
    """A small document (an index manifest), under the same policy and limits."""
    import io

    buf = io.BytesIO()
    download(
        url,
        buf,
        Limits.from_env(max_bytes=MAX_MANIFEST_BYTES),
        allow_insecure_http=allow_insecure_http,
    )
    return buf.getvalue()
