"""Downloads from a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fa_dist.act import install
from fa_dist.decide import resolve
from fa_dist.errors import FaDistError

pytestmark = pytest.mark.integration
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    served = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).served += 1
        if self.mode == "404":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.mode == "slow":
            time.sleep(3)
        if self.mode == "die":  # half the file, then the connection goes away
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.mode == "ok" and self.path.endswith("slowish.whl"):
            time.sleep(0.5)  # long enough for a second install to arrive while the first downloads
        self.wfile.write(PAYLOAD)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path / "cache"))
    Handler.mode, Handler.served = "ok", 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def cand(url: str, name: str = "fa_kernels-0.1.0-py3-none-any.whl", sha: str = SHA) -> resolve.Candidate:
    return resolve.Candidate(filename=name, location=url + name, sha256=sha, source=url)


def test_download_is_verified_cached_and_reused(server: str) -> None:
    path = install.fetch(cand(server))
    assert path.read_bytes() == PAYLOAD and Handler.served == 1
    assert install.fetch(cand(server)) == path and Handler.served == 1  # from the cache
    path.write_bytes(b"corrupted")
    seen: list[tuple[int, int]] = []
    assert install.fetch(cand(server), progress=lambda done, total: seen.append((done, total))).read_bytes() == PAYLOAD
    assert Handler.served == 2  # fetched again, reporting progress up to the whole length
    assert seen and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert all(a[0] < b[0] for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize(("mode", "message"), [
    ("404", "HTTP Error 404"),
    ("die", "ended after 524288 of 1048576 bytes"),
])
def test_broken_transfers_fail_cleanly_and_leave_nothing(server: str, mode: str, message: str) -> None:
    Handler.mode = mode
    with pytest.raises(FaDistError, match=message):
        install.fetch(cand(server))
    assert not any(p.suffix == ".whl" for p in (Path(install.cache_dir()) / "wheels").iterdir())


def test_wrong_hash_is_refused(server: str) -> None:
    with pytest.raises(FaDistError, match="does not match the index's"):
        install.fetch(cand(server, sha="0" * 64))


def test_slow_server_times_out(server: str) -> None:
    Handler.mode = "slow"
    started = time.perf_counter()
    with pytest.raises(FaDistError, match="cannot download"):
        install.fetch(cand(server), timeout=1)
    assert time.perf_counter() - started < 2.9


def test_two_installs_at_once_download_once(server: str) -> None:
    results: list[Path] = []
    c = cand(server, name="slowish.whl")
    threads = [threading.Thread(target=lambda: results.append(install.fetch(c))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1] and results[0].read_bytes() == PAYLOAD
    assert Handler.served == 1
