"""Issue #12 items 6, 7 and 11 against a real HTTP server on 127.0.0.1 that redirects, never stops, or
trickles: every hop is checked, every transfer is capped and has a deadline, files get umask modes."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from fa_dist.act import install, net
from fa_dist.decide import resolve
from fa_dist.errors import ConfigError, FaDistError

pytestmark = pytest.mark.integration
PAYLOAD = b"w" * 30_000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
NAME = "fa_kernels-0.1.0-py3-none-any.whl"


class Handler(http.server.BaseHTTPRequestHandler):
    redirects: ClassVar[dict[str, str]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
            return
        if self.path == "/manifest.json":
            body = json.dumps({"wheels": [{"filename": NAME, "sha256": SHA, "size": len(PAYLOAD)}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.end_headers()  # no Content-Length: the body ends when the server says so
        try:
            if self.path.startswith("/endless"):
                while True:
                    self.wfile.write(b"x" * 65536)
            elif self.path.startswith("/trickle"):
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.wfile.write(PAYLOAD)
        except OSError:
            pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path / "cache"))
    Handler.redirects = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def cand(url: str, **kw: object) -> resolve.Candidate:
    return resolve.Candidate(filename=NAME, location=url, sha256=kw.pop("sha256", SHA), source="t", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("hop", ["http://10.255.255.1/manifest.json", "HTTP://example.com/manifest.json",
                                 "ftp://127.0.0.1/manifest.json", "http://127.evil.example/manifest.json"])
def test_a_redirect_of_the_manifest_is_checked(server: str, hop: str) -> None:  # item 6
    Handler.redirects = {"/idx/manifest.json": hop}
    with pytest.raises(ConfigError, match=r"not allowed|plain http to a non-local host"):
        install.index_candidates(server + "/idx/")


def test_a_redirect_of_the_wheel_is_checked_and_a_loopback_one_followed(server: str) -> None:  # item 6
    Handler.redirects = {"/a.whl": "http://198.51.100.7/a.whl", "/b.whl": "/wheel"}
    with pytest.raises(net.PolicyRefused, match="plain http to a non-local host"):
        install.fetch(cand(server + "/a.whl"))
    assert install.fetch(cand(server + "/b.whl")).read_bytes() == PAYLOAD


def test_an_endless_response_stops_at_the_manifest_size(server: str) -> None:  # item 7
    started = time.perf_counter()
    with pytest.raises(FaDistError, match="more than the 30000 bytes"):
        install.fetch(cand(server + "/endless", size=len(PAYLOAD)))
    assert time.perf_counter() - started < 5
    assert [p.name for p in (Path(os.environ["FA_DIST_CACHE_DIR"]) / "wheels").iterdir()] == [NAME + ".lock"]


def test_without_a_size_the_cap_is_the_maximum(server: str, monkeypatch: pytest.MonkeyPatch) -> None:  # item 7
    monkeypatch.setattr(net, "MAX_WHEEL_BYTES", 1 << 20)
    with pytest.raises(FaDistError, match="more than the 1048576 bytes"):
        install.fetch(cand(server + "/endless"))


def test_a_trickle_stops_at_the_total_deadline(server: str, monkeypatch: pytest.MonkeyPatch) -> None:  # item 7
    monkeypatch.setenv("FA_DIST_DEADLINE", "1")
    started = time.perf_counter()
    with pytest.raises(FaDistError, match="not done after 1 s"):
        install.fetch(cand(server + "/trickle"))
    assert time.perf_counter() - started < 3


def test_the_manifest_size_and_sha_are_read_and_the_cached_wheel_gets_a_umask_mode(server: str) -> None:  # items 7, 11
    (found,) = install.index_candidates(server + "/")
    assert found.size == len(PAYLOAD) and found.sha256 == SHA and found.problem is None
    old = os.umask(0o022)
    try:
        path = install.fetch(found)
    finally:
        os.umask(old)
    assert path.read_bytes() == PAYLOAD and stat.S_IMODE(path.stat().st_mode) == 0o644
