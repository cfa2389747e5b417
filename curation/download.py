"""Downloading a pool's URLs: bounded, polite and never fatal.

Owns ``DownloadConfig`` (validated options) and ``Downloader`` (a thread pool with a total limit,
a per-host semaphore, per-request timeouts and an overall deadline, a streamed byte cap, bounded
redirects, retries with exponential backoff on timeouts / connection errors / 5xx / 429, no retry
on other 4xx, and a magic-byte check that the body is an image). Every failure comes back as a
``DownloadResult`` with a named ``error`` (``download_timeout``, ``download_http_404``, ...), never
as an exception.

Only ``http`` and ``https`` URLs are fetched (no ``file://``, also not through a redirect).
The limits hold per process: a Ray job with N concurrent download tasks opens at most
N * per_host_concurrency connections to one host.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

from pydantic import Field

from humans.shared.config import StrictModel
from humans.shared.imageio import sniff_format

DOWNLOAD_ERRORS = ("download_timeout", "download_too_large", "download_not_image", "download_bad_url",
                   "download_too_many_redirects", "download_connection_error", "download_http_<code>")


class DownloadConfig(StrictModel):
    """Options of the URL downloader (``pipelines.yaml`` / CLI may set them)."""

    timeout_s: float = Field(10.0, gt=0, description="connect and per-read socket timeout, seconds")
    max_time_s: float = Field(60.0, gt=0, description="deadline for one attempt including the body")
    retries: int = Field(2, ge=0, le=10, description="extra attempts after a timeout, connection error, "
                                                     "5xx or 429 (never after other 4xx)")
    backoff_s: float = Field(0.5, ge=0, description="wait before retry k is backoff_s * 2**k seconds")
    max_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="bodies larger than this are dropped")
    max_redirects: int = Field(5, ge=0, le=30, description="redirects followed per request")
    per_host_concurrency: int = Field(4, ge=1, description="requests in flight to one host")
    total_concurrency: int = Field(16, ge=1, description="requests in flight in all (threads)")
    user_agent: str = Field("humans-curation/0.1 (research image pool; respects robots.txt upstream)",
                            min_length=1)
    verify_tls: bool = Field(True, description="check HTTPS certificates")


@dataclass
class DownloadResult:
    """Outcome of one URL: ``data`` on success, else ``error`` names why."""

    url: str
    data: bytes | None = None
    error: str | None = None
    status: int | None = None
    attempts: int = 0
    final_url: str | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class _Fail(Exception):
    def __init__(self, error: str, retry: bool, detail: str = "", status: int | None = None):
        super().__init__(error)
        self.error, self.retry, self.detail, self.status = error, retry, detail, status


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Bounded redirects, http/https targets only."""

    def __init__(self, limit: int):
        super().__init__()
        self.max_redirections = limit
        self.max_repeats = max(1, min(4, limit))

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise _Fail("download_bad_url", False, f"redirect to {scheme}:// refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        if target:
            scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target)).scheme.lower()
            if scheme not in ("http", "https"):
                fp.close()
                raise _Fail("download_bad_url", False, f"redirect to {scheme}:// refused")
        visited = getattr(req, "redirect_dict", {})
        if sum(visited.values()) >= self.max_redirections:
            fp.close()
            raise _Fail("download_too_many_redirects", False, f"more than {self.max_redirections} redirects")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def host_of(url: str) -> str:
    """Host key for the per-host limit (hostname and port, lower case)."""
    parts = urllib.parse.urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or ''}"


class Downloader:
    """Fetch many URLs concurrently within the limits of a ``DownloadConfig``; thread-safe."""

    def __init__(self, config: DownloadConfig | None = None):
        self.config = config or DownloadConfig()
        handlers: list = [_Redirects(self.config.max_redirects)]
        if not self.config.verify_tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        # no ProxyHandler from the environment surprises: use explicit, default handlers only
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.BoundedSemaphore] = {}

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        key = host_of(url)
        with self._lock:
            sem = self._hosts.get(key)
            if sem is None:
                sem = self._hosts[key] = threading.BoundedSemaphore(self.config.per_host_concurrency)
            return sem

    # one attempt -------------------------------------------------------------------------------
    def _attempt(self, url: str) -> tuple[bytes, int, str]:
        cfg = self.config
        req = urllib.request.Request(url, headers={"User-Agent": cfg.user_agent, "Accept": "image/*,*/*;q=0.5"})
        start = time.monotonic()
        try:
            resp = self._opener.open(req, timeout=cfg.timeout_s)
        except _Fail:
            raise
        except urllib.error.HTTPError as exc:
            code = int(exc.code)
            exc.close()
            if 300 <= code < 400 and "redirect" in str(exc.reason).lower():  # urllib's loop guard
                raise _Fail("download_too_many_redirects", False, f"{code}: {exc.reason}", code) from None
            raise _Fail(f"download_http_{code}", code >= 500 or code in (408, 429), str(exc.reason), code) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, _Fail):
                raise reason from None
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Fail("download_timeout", True, str(reason)) from None
            raise _Fail("download_connection_error", True, str(reason)) from None
        except (socket.timeout, TimeoutError) as exc:
            raise _Fail("download_timeout", True, str(exc)) from None
        except (ValueError, http.client.HTTPException) as exc:
            raise _Fail("download_connection_error", True, f"{type(exc).__name__}: {exc}") from None
        with resp:
            status = int(getattr(resp, "status", 200) or 200)
            final_url = resp.geturl()
            length = resp.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > cfg.max_bytes:
                raise _Fail("download_too_large", False, f"Content-Length {length} > max_bytes {cfg.max_bytes}",
                            status)
            chunks: list[bytes] = []
            total = 0
            first = True
            try:
                while True:
                    chunk = resp.read(min(65536, cfg.max_bytes + 1 - total))
                    if not chunk:
                        break
                    if first:
                        first = False
                        if len(chunk) >= 16 and sniff_format(chunk) is None:
                            raise _Fail("download_not_image", False,
                                        f"content starts {chunk[:16]!r} ({resp.headers.get('Content-Type')})",
                                        status)
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > cfg.max_bytes:
                        raise _Fail("download_too_large", False, f"body over max_bytes {cfg.max_bytes}", status)
                    if time.monotonic() - start > cfg.max_time_s:
                        raise _Fail("download_timeout", True, f"body not complete after max_time_s {cfg.max_time_s}",
                                    status)
            except (socket.timeout, TimeoutError) as exc:
                raise _Fail("download_timeout", True, f"reading body: {exc}", status) from None
            except (OSError, http.client.HTTPException) as exc:
                raise _Fail("download_connection_error", True, f"reading body: {type(exc).__name__}: {exc}",
                            status) from None
        data = b"".join(chunks)
        if sniff_format(data) is None:
            raise _Fail("download_not_image", False,
                        f"{len(data)} bytes, content starts {data[:16]!r}", status)
        return data, status, final_url

    def fetch(self, url: str) -> DownloadResult:
        """Fetch one URL with retries; never raises."""
        cfg = self.config
        t0 = time.monotonic()
        scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
        if scheme not in ("http", "https") or not urllib.parse.urlsplit(url).hostname:
            return DownloadResult(url=str(url), error="download_bad_url", detail="only http(s) URLs with a host")
        sem = self._host_slot(url)
        attempts = 0
        last: _Fail | None = None
        for attempt in range(cfg.retries + 1):
            if attempt:
                time.sleep(cfg.backoff_s * (2 ** (attempt - 1)))
            attempts += 1
            with sem:
                try:
                    data, status, final_url = self._attempt(url)
                    return DownloadResult(url=url, data=data, status=status, attempts=attempts,
                                          final_url=final_url, seconds=time.monotonic() - t0)
                except _Fail as fail:
                    last = fail
            if not last.retry:
                break
        assert last is not None
        return DownloadResult(url=url, error=last.error, status=last.status, attempts=attempts,
                              detail=last.detail, seconds=time.monotonic() - t0)

    def fetch_many(self, urls: Iterable[str]) -> Iterator[DownloadResult]:
        """Fetch all ``urls`` with ``total_concurrency`` threads; results in input order."""
        urls = list(urls)
        if not urls:
            return iter(())
        workers = min(self.config.total_concurrency, len(urls))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")

        def run() -> Iterator[DownloadResult]:
            try:
                yield from pool.map(self.fetch, urls)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

        return run()


def download_all(urls: Iterable[str], config: DownloadConfig | None = None) -> list[DownloadResult]:
    """Convenience: fetch ``urls`` and return their results in order."""
    return list(Downloader(config).fetch_many(urls))
