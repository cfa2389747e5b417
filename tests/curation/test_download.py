"""curation.download against a real HTTP server on 127.0.0.1 (slow, flaky, failing, redirecting,
oversized and non-image endpoints), plus URL-list pools read through curation.sources."""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from humans.curation.download import DownloadConfig, Downloader, download_all
from humans.curation.sources import plan_pool, read_task
from humans.shared.config import ConfigError, validate
from humans.shared.imageio import decode_rgb, encode_jpeg

IMAGE = encode_jpeg(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), 90)


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.hits: Counter = Counter()
        self.active: dict[str, int] = defaultdict(int)
        self.max_active: dict[str, int] = defaultdict(int)
        self.stop = threading.Event()


def _make_handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str = "image/jpeg", length: int | None = None,
                  headers: dict | None = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.send_header("Connection", "close")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            path = self.path
            with state.lock:
                state.hits[path] += 1
                hit = state.hits[path]
            if path == "/ok.jpg":
                return self._send(200, IMAGE)
            if path == "/octet.bin":  # an image with a wrong content type is still an image
                return self._send(200, IMAGE, "application/octet-stream")
            if path == "/slow.jpg":
                state.stop.wait(3.0)
                return self._send(200, IMAGE)
            if path.startswith("/flaky"):  # 503 twice, then the image
                return self._send(503, b"busy", "text/plain") if hit <= 2 else self._send(200, IMAGE)
            if path == "/missing.jpg":
                return self._send(404, b"not found", "text/plain")
            if path == "/broken.jpg":
                return self._send(500, b"oops", "text/plain")
            if path.startswith("/redirect/"):
                n = int(path.rsplit("/", 1)[1])
                target = "/ok.jpg" if n <= 1 else f"/redirect/{n - 1}"
                return self._send(302, b"", "text/plain", headers={"Location": target})
            if path == "/to-file":
                return self._send(302, b"", "text/plain", headers={"Location": "file:///etc/passwd"})
            if path == "/huge-declared.jpg":  # claims 50 MB, sends little
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(50_000_000))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(IMAGE[:1000])
                return
            if path == "/huge-stream.jpg":  # no Content-Length, streams past the cap
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(IMAGE)
                    for _ in range(200):
                        self.wfile.write(b"\0" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
                return
            if path == "/page.html":
                return self._send(200, b"<!DOCTYPE html><html><body>an image? no</body></html>", "text/html")
            if path.startswith("/conc/"):
                host = self.headers.get("Host", "").split(":")[0]
                with state.lock:
                    state.active[host] += 1
                    state.max_active[host] = max(state.max_active[host], state.active[host])
                try:
                    time.sleep(0.15)
                    return self._send(200, IMAGE)
                finally:
                    with state.lock:
                        state.active[host] -= 1
            return self._send(404, b"?", "text/plain")

    return Handler


@pytest.fixture(scope="module")
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


FAST = dict(timeout_s=2.0, max_time_s=5.0, retries=2, backoff_s=0.01, max_bytes=1_000_000)


def test_each_kind_of_response(server):
    base, state = server
    dl = Downloader(DownloadConfig(**FAST))
    cases = {
        "/ok.jpg": (None, 1),
        "/octet.bin": (None, 1),
        "/flaky-1.jpg": (None, 3),  # 503, 503, 200: retried
        "/missing.jpg": ("download_http_404", 1),  # 4xx: never retried
        "/broken.jpg": ("download_http_500", 3),  # 5xx: retried, then given up
        "/redirect/3": (None, 1),  # 3 redirects, within the limit of 5
        "/redirect/9": ("download_too_many_redirects", 1),
        "/to-file": ("download_bad_url", 1),
        "/huge-declared.jpg": ("download_too_large", 1),
        "/huge-stream.jpg": ("download_too_large", 1),
        "/page.html": ("download_not_image", 1),
    }
    results = {path: dl.fetch(base + path) for path in cases}
    for path, (error, attempts) in cases.items():
        res = results[path]
        assert res.error == error, (path, res)
        assert res.attempts == attempts, (path, res)
        if error is None:
            assert res.data == IMAGE and decode_rgb(res.data).shape == (48, 64, 3)
    assert state.hits["/flaky-1.jpg"] == 3 and state.hits["/missing.jpg"] == 1 and state.hits["/broken.jpg"] == 3
    assert results["/redirect/3"].final_url.endswith("/ok.jpg")
    assert results["/missing.jpg"].status == 404
    assert dl.fetch("file:///etc/passwd").error == "download_bad_url"
    assert dl.fetch("not a url").error == "download_bad_url"


def test_timeout_is_retried_then_reported(server):
    base, state = server
    t0 = time.monotonic()
    res = Downloader(DownloadConfig(timeout_s=0.3, retries=1, backoff_s=0.01)).fetch(base + "/slow.jpg")
    elapsed = time.monotonic() - t0
    assert res.error == "download_timeout" and res.attempts == 2
    assert 0.55 < elapsed < 2.9  # two 0.3 s timeouts, not the server's 3 s sleep (slack for a loaded CI)
    assert state.hits["/slow.jpg"] == 2


def test_connection_refused_is_named():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    res = Downloader(DownloadConfig(retries=1, backoff_s=0.0, timeout_s=0.5)).fetch(f"http://127.0.0.1:{port}/x.jpg")
    assert res.error == "download_connection_error" and res.attempts == 2


def test_per_host_concurrency_is_respected(server):
    base, state = server
    port = base.rsplit(":", 1)[1]
    urls = [f"http://127.0.0.1:{port}/conc/a{i}" for i in range(12)]
    urls += [f"http://localhost:{port}/conc/b{i}" for i in range(12)]
    cfg = DownloadConfig(per_host_concurrency=2, total_concurrency=8, timeout_s=5, retries=0)
    t0 = time.monotonic()
    results = download_all(urls, cfg)
    elapsed = time.monotonic() - t0
    assert [r.url for r in results] == urls  # input order
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    # the server counts a request active until its handler returns, a moment after the client has the
    # response and started the next one: on a loaded machine that shows as one extra (never 8 or 12)
    assert 2 <= state.max_active["127.0.0.1"] <= 3 and 2 <= state.max_active["localhost"] <= 3
    # 12 requests of 0.15 s two at a time take >= 0.9 s per host (a lower bound that holds however
    # loaded the machine is; how fast it goes is for benchmarks, not tests)
    assert elapsed > 0.85


def test_config_is_validated():
    with pytest.raises(ConfigError) as info:
        validate(DownloadConfig, {"timeout_s": -1, "per_host_concurrency": 0, "retry": 3})
    text = str(info.value)
    assert "timeout_s" in text and "per_host_concurrency" in text and "'retry'" in text and "unknown key" in text


def test_url_list_pool_downloads_with_named_errors(server, tmp_path):
    base, _ = server
    urls = [base + p for p in ("/ok.jpg", "/missing.jpg", "/page.html", "/redirect/2", "/octet.bin")]
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": urls, "key": ["a", "b", "c", "d/e", "f"]}), path)
    tasks = plan_pool(str(path), items_per_task=2)
    assert [t.task_id for t in tasks] == ["urls-0000000000-0000000002", "urls-0000000002-0000000004",
                                          "urls-0000000004-0000000005"]
    assert plan_pool(str(path), items_per_task=2) == tasks  # deterministic
    items = [it for t in tasks for it in read_task(t, DownloadConfig(**FAST))]
    assert [it.error for it in items] == [None, "download_http_404", "download_not_image", None, None]
    assert items[0].key == "a" and items[3].key.startswith("d_e-") and items[0].source == urls[0]
    assert items[0].data == IMAGE and items[1].data is None
    # CSV without a key column: keys from the row number
    csv = tmp_path / "urls.csv"
    csv.write_text("url,caption\n" + "".join(f"{u},x\n" for u in urls[:3]))
    tasks = plan_pool(str(csv), items_per_task=10)
    items = list(read_task(tasks[0], DownloadConfig(**FAST)))
    assert [it.key for it in items] == ["u0000000000", "u0000000001", "u0000000002"]
    assert [it.error for it in items] == [None, "download_http_404", "download_not_image"]
