"""A local S3 lab: a moto S3 server process behind a recording, fault-injecting proxy.

Everything listens on 127.0.0.1 only. Layout::

    client (s3fs, boto3) --> S3Proxy (this process, threads) --> moto server (subprocess)

`S3Proxy` forwards every request byte-exact (Range, HEAD, PUT, multipart, chunked bodies)
and records, per request: method, bucket, key, query, Range header, status, response body
bytes and request body bytes. At run time it can misbehave for chosen keys, N times or
forever (`Fault.kind`): answer an error status (503 SlowDown, 403 AccessDenied, any
status), answer another range than the one asked (`shift_range`: the upstream's honest
Content-Range, the right length), ignore the Range header (`ignore_range`: 200 and the
whole object), cut the body short and close (`short_body`), reset the connection
mid-body (`reset`), wait before answering (`delay`), or replace the object upstream
just before forwarding (`replace`: a re-upload during a read). It can also delay every
response by a fixed latency and cap each response body's bandwidth.

In-process use (tests)::

    with S3Lab() as lab:
        create_bucket(lab.moto_url, "b")
        fs = s3_filesystem(lab.endpoint_url)
        lab.proxy.add_fault("b/key", status=503, times=2)
        ...
        lab.proxy.records()

As a separate process (benchmarks)::

    python tests/s3lab.py serve --latency-ms 20 --bandwidth-mbps 100

prints one JSON line ({"endpoint_url", "moto_url", "control_url", "pid"}) and serves
until SIGTERM/SIGINT. Its control endpoint, on the proxy's own port:

    GET    /_lab/stats    {"requests": [record, ...], "totals": {...}}
    POST   /_lab/reset    clear the records
    GET    /_lab/faults   the current fault config (rules with their remaining counts)
    POST   /_lab/faults   JSON {"rules": [rule, ...], "latency_ms": x, "bandwidth_mbps": y};
                          keys left out keep their value; rules replace all rules
    DELETE /_lab/faults   no rules, no latency, no bandwidth cap

A rule is {"key": "bucket/key-or-glob", "kind": "status" (default) or another
`FAULT_KINDS` name, "status": 503, "times": N or null (forever), "skip": N (requests let
through first), "methods": ["GET", ...] or null (all), "code": "SlowDown" (default per
status), "shift": bytes (shift_range), "seconds": s (delay)}.
Bandwidth is in MB/s (10**6 bytes per second), applied to each response body separately.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CHUNK = 64 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}
ERROR_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    500: "InternalError",
    503: "SlowDown",
}
ERROR_MESSAGES = {
    "AccessDenied": "Access Denied",
    "NoSuchKey": "The specified key does not exist.",
    "InternalError": "We encountered an internal error. Please try again.",
    "SlowDown": "Please reduce your request rate.",
}


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on `host` a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it when the parent dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class MotoServer:
    """moto's S3 server (`python -m moto.server`) as a child process on 127.0.0.1."""

    def __init__(self, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self.port = port
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the running server."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        """Start the process and wait until it answers HTTP; raise if it does not."""
        requested = self.port
        for _ in range(1 if requested else 3):  # a free port may be taken before moto binds
            self.port = requested or free_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 (open while the server runs)
            env = {**os.environ, **DUMMY_CREDENTIALS, "NO_PROXY": "*", "no_proxy": "*"}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            if self._wait_ready():
                return self
            log = self.log_text()
            self.stop()
        raise RuntimeError(f"moto server did not start: {log[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        return False

    def log_text(self) -> str:
        """What the server printed so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def reset(self) -> None:
        """Forget every bucket and object (moto's /moto-api/reset)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        """Terminate the process (kill it after 5 s) and close its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


FAULT_KINDS = ("status", "shift_range", "ignore_range", "short_body", "reset", "delay", "replace")


@dataclass
class Fault:
    """Misbehave (`kind`) for requests whose "bucket/key" matches `key`.

    `key` is an exact name or an fnmatch glob; the first `skip` matching requests pass
    untouched, then `times` are hit (None: forever). Kinds:
    - status: answer `status` (with an S3 error `code`) instead of forwarding;
    - shift_range: forward with the Range moved by `shift` bytes (backwards when it would
      leave the object), so the answer holds other bytes and says so in Content-Range;
    - ignore_range: forward without the Range header (the whole object, status 200);
    - short_body: send the headers and half the body, then close the connection;
    - reset: send the headers and half the body, then reset the connection (RST);
    - delay: wait `seconds`, then forward;
    - replace: upload the next of `replacements` (cycled) to the key upstream, then
      forward: the object changes between a client's HEAD and this request (with
      `drop_if_match`, forwarded without If-Match: a store that ignores it).
    """

    key: str
    status: int = 503
    times: int | None = None
    methods: list[str] | None = None
    code: str | None = None
    kind: str = "status"
    skip: int = 0
    shift: int = 4096
    seconds: float = 0.0
    replacements: list[bytes] = field(default_factory=list, repr=False)
    drop_if_match: bool = False
    hits: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: one of {FAULT_KINDS}")
        if self.kind == "replace" and not self.replacements:
            raise ValueError("a replace fault needs replacements")

    def matches(self, method: str, bucket_key: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return bucket_key == self.key or fnmatch.fnmatchcase(bucket_key, self.key)

    @property
    def error_code(self) -> str:
        return self.code or ERROR_CODES.get(self.status, str(self.status))


@dataclass
class RequestRecord:
    """One request as the proxy saw it."""

    method: str
    bucket: str
    key: str
    query: str
    range: str | None
    status: int
    body_bytes: int  # response body bytes sent to the client
    request_bytes: int  # request body bytes received from the client
    seconds: float
    fault: str | None = None  # the error code the proxy answered itself, if any
    headers: dict[str, str] = field(default_factory=dict)  # a few request headers

    @property
    def path(self) -> str:
        """bucket/key."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket


def split_s3_path(raw_path: str) -> tuple[str, str, str]:
    """Path-style request path -> (bucket, key, query), unquoted."""
    parsed = urllib.parse.urlsplit(raw_path)
    path = urllib.parse.unquote(parsed.path).lstrip("/")
    bucket, _, key = path.partition("/")
    return bucket, key, parsed.query


def error_body(code: str, resource: str) -> bytes:
    """An S3-style XML error document."""
    message = ERROR_MESSAGES.get(code, code)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>/{resource}</Resource><RequestId>s3lab</RequestId></Error>"
    ).encode()


class _LabServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: a benchmark may open many connections at once
    lab: S3Proxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections close after this
    disable_nagle_algorithm = True  # else headers then body cost a 40 ms delayed ACK
    server: _LabServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # Request bodies ---------------------------------------------------------------
    def _body_chunks(self) -> Iterator[bytes]:
        """The request body as it arrives, de-chunked if it was chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                raise ConnectionError("client closed during the request body")
            remaining -= len(data)
            yield data

    def _send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # Control endpoint -------------------------------------------------------------
    def _control(self) -> None:
        lab = self.server.lab
        body = b"".join(self._body_chunks())
        route = (self.command, urllib.parse.urlsplit(self.path).path.rstrip("/"))
        if route == ("GET", "/_lab/stats"):
            self._send_json(200, lab.stats())
        elif route == ("POST", "/_lab/reset"):
            lab.reset()
            self._send_json(200, {"ok": True})
        elif route == ("GET", "/_lab/faults"):
            self._send_json(200, lab.fault_config())
        elif route == ("POST", "/_lab/faults"):
            try:
                lab.configure(json.loads(body or b"{}"))
            except (ValueError, TypeError) as error:
                self._send_json(400, {"error": str(error)})
                return
            self._send_json(200, lab.fault_config())
        elif route == ("DELETE", "/_lab/faults"):
            lab.clear_faults()
            self._send_json(200, lab.fault_config())
        elif route == ("GET", "/_lab/health"):
            self._send_json(200, {"ok": True, "upstream": lab.upstream_url})
        else:
            self._send_json(404, {"error": f"no control route {route}"})

    # Proxying ---------------------------------------------------------------------
    def _handle(self) -> None:
        if self.path.startswith("/_lab/"):
            self._control()
            return
        lab = self.server.lab
        started = time.monotonic()
        bucket, key, query = split_s3_path(self.path)
        bucket_key = f"{bucket}/{key}" if key else bucket
        fault = lab._take_fault(self.command, bucket_key)
        latency, bandwidth = lab.latency_ms, lab.bandwidth_mbps
        record = RequestRecord(
            method=self.command,
            bucket=bucket,
            key=key,
            query=query,
            range=self.headers.get("Range"),
            status=0,
            body_bytes=0,
            request_bytes=0,
            seconds=0.0,
            headers={
                name: self.headers[name]
                for name in ("If-Match", "Content-Length", "Transfer-Encoding")
                if name in self.headers
            },
        )
        lab._begin()
        try:
            if latency:
                time.sleep(latency / 1000)
            if fault is None:
                self._forward(record, bandwidth)
            elif fault.kind == "status":
                self._answer_fault(fault, bucket_key, record)
            else:
                record.fault = fault.kind
                self._misbehave(fault, bucket_key, record, bandwidth)
        except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as error:
            self.close_connection = True
            if record.status == 0:
                record.status = 502
                with contextlib.suppress(OSError):
                    body = f"s3lab proxy: upstream failed: {error}".encode()
                    self.send_response(502)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
        finally:
            record.seconds = time.monotonic() - started
            lab._record(record)

    def _answer_fault(self, fault: Fault, bucket_key: str, record: RequestRecord) -> None:
        for data in self._body_chunks():  # drain, so the connection stays usable
            record.request_bytes += len(data)
        body = b"" if self.command == "HEAD" else error_body(fault.error_code, bucket_key)
        record.status, record.fault = fault.status, fault.error_code
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", "s3lab")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
            record.body_bytes = len(body)

    def _misbehave(
        self, fault: Fault, bucket_key: str, record: RequestRecord, bandwidth: float | None
    ) -> None:
        """Forward the request, misbehaving as `fault.kind` says (see Fault)."""
        headers: dict[str, str | None] = {}
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault.kind == "ignore_range":
            headers["Range"] = None
        elif fault.kind == "shift_range" and self.headers.get("Range"):
            headers["Range"] = self._shifted(self.headers["Range"], fault.shift, bucket_key)
        elif fault.kind == "replace":
            with self.server.lab._lock:
                body = fault.replacements[(fault.hits - 1) % len(fault.replacements)]
            self.server.lab.put_upstream(bucket_key, body)
            if fault.drop_if_match:
                headers["If-Match"] = None
        cut = fault.kind if fault.kind in ("short_body", "reset") else None
        self._forward(record, bandwidth, headers, cut)

    def _shifted(self, header: str, shift: int, bucket_key: str) -> str:
        """`bytes=a-b` moved by `shift` bytes, backwards when it would leave the object."""
        first, last = (int(v) for v in header.removeprefix("bytes=").split("-"))
        size = self.server.lab.upstream_size(bucket_key)
        if last + shift >= size:
            shift = -min(shift, first)
        return f"bytes={first + shift}-{last + shift}"

    def _forward(
        self,
        record: RequestRecord,
        bandwidth: float | None,
        replace_headers: dict[str, str | None] | None = None,
        cut: str | None = None,
    ) -> None:
        lab = self.server.lab
        changed = replace_headers or {}
        replaced = {name.lower() for name in changed}
        upstream = http.client.HTTPConnection(lab.upstream_host, lab.upstream_port, timeout=60)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() not in replaced:
                    upstream.putheader(name, value)
            for name, value in changed.items():
                if value is not None:
                    upstream.putheader(name, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for data in self._body_chunks():
                record.request_bytes += len(data)
                upstream.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            self._relay(response, record, bandwidth, cut)
        finally:
            upstream.close()

    def _relay(
        self,
        response: http.client.HTTPResponse,
        record: RequestRecord,
        bandwidth: float | None,
        cut: str | None = None,
    ) -> None:
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        if no_body:
            chunks: Iterator[bytes] = iter(())
        elif length is not None and response.getheader("Transfer-Encoding") is None:
            chunks = iter(lambda: response.read(CHUNK), b"")
        else:  # unknown length: buffer, so the client gets a Content-Length
            whole = response.read()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(whole))))
            chunks = iter([whole] if whole else [])
        record.status = response.status
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if cut is not None and length is not None:
            self._cut_short(int(length) // 2, chunks, record, reset=cut == "reset")
            return
        started = time.monotonic()
        for data in chunks:
            self.wfile.write(data)
            record.body_bytes += len(data)
            if bandwidth:
                ahead = record.body_bytes / (bandwidth * 1e6) - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        self.wfile.flush()

    def _cut_short(
        self, keep: int, chunks: Iterator[bytes], record: RequestRecord, reset: bool
    ) -> None:
        """Send `keep` bytes of the body, then close the connection (reset: with an RST)."""
        for data in chunks:
            part = data[: keep - record.body_bytes]
            self.wfile.write(part)
            record.body_bytes += len(part)
            if record.body_bytes >= keep:
                break
        self.wfile.flush()
        self.close_connection = True
        if reset:  # SO_LINGER 0: close() sends an RST instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR if not reset else socket.SHUT_RDWR)


class S3Proxy:
    """A recording, fault-injecting HTTP reverse proxy on 127.0.0.1 in front of `upstream_url`.

    Runs in threads of this process; `start()`/`stop()` or use it as a context manager.
    """

    def __init__(
        self,
        upstream_url: str,
        port: int = 0,
        latency_ms: float = 0.0,
        bandwidth_mbps: float | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream_url)
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the lab only proxies to the loopback, not {upstream_url}")
        self.upstream_url = upstream_url
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port or 80
        self.latency_ms = latency_ms
        self.bandwidth_mbps = bandwidth_mbps
        self.faults: list[Fault] = []
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._in_flight = 0
        self._client: Any = None  # boto3, for the faults that act on the upstream
        self._server = _LabServer((HOST, port), _Handler)
        self._server.lab = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The endpoint URL clients use: http://127.0.0.1:PORT."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> S3Proxy:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="s3lab-proxy", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` (from another thread)."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Upstream ---------------------------------------------------------------------
    def _upstream_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3_client(self.upstream_url)
            return self._client

    def put_upstream(self, bucket_key: str, body: bytes) -> None:
        """Store `body` at "bucket/key" upstream (not recorded)."""
        bucket, key = bucket_key.split("/", 1)
        self._upstream_client().put_object(Bucket=bucket, Key=key, Body=body)

    def upstream_size(self, bucket_key: str) -> int:
        """The size of "bucket/key" upstream (a HEAD, not recorded)."""
        bucket, key = bucket_key.split("/", 1)
        return int(self._upstream_client().head_object(Bucket=bucket, Key=key)["ContentLength"])

    # Records ----------------------------------------------------------------------
    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._in_flight -= 1
            self._done.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled; False if one still is after `timeout`.

        A client has its response before the proxy files the record: reading records
        right after a call would race without this.
        """
        with self._done:
            return self._done.wait_for(lambda: self._in_flight == 0, timeout)

    def records(self, timeout: float = 10.0) -> list[RequestRecord]:
        """The requests proxied (or faulted) since the last `reset()`, oldest first.

        Waits up to `timeout` s for requests in flight (e.g. a timed-out client's) to end.
        """
        self.wait_idle(timeout)
        with self._lock:
            return list(self._records)

    def reset(self, timeout: float = 10.0) -> None:
        """Forget the recorded requests (faults and latency stay), after in-flight ones end."""
        self.wait_idle(timeout)
        with self._lock:
            self._records.clear()

    def stats(self) -> dict:
        """Records and totals as JSON-ready data (what GET /_lab/stats answers)."""
        records = self.records()
        by_method: dict[str, dict[str, int]] = {}
        for record in records:
            entry = by_method.setdefault(record.method, {"requests": 0, "body_bytes": 0})
            entry["requests"] += 1
            entry["body_bytes"] += record.body_bytes
        totals = {
            "requests": len(records),
            "body_bytes": sum(r.body_bytes for r in records),
            "request_bytes": sum(r.request_bytes for r in records),
            "faults": sum(r.fault is not None for r in records),
            "by_method": by_method,
        }
        return {"requests": [asdict(r) for r in records], "totals": totals}

    # Faults and latency -----------------------------------------------------------
    def add_fault(
        self,
        key: str,
        status: int = 503,
        times: int | None = None,
        methods: list[str] | None = None,
        code: str | None = None,
        **kind: Any,
    ) -> Fault:
        """Misbehave for requests to "bucket/key" (or glob) `times` times (None: always):
        answer `status` by default, or as `kind=...` says (Fault's other fields)."""
        fault = Fault(key=key, status=status, times=times, methods=methods, code=code, **kind)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """No fault rules, no latency, no bandwidth cap."""
        with self._lock:
            self.faults.clear()
            self.latency_ms = 0.0
            self.bandwidth_mbps = None

    def set_latency(self, latency_ms: float, bandwidth_mbps: float | None = None) -> None:
        """Delay each response by `latency_ms`; cap each response body at `bandwidth_mbps` MB/s."""
        self.latency_ms = latency_ms
        self.bandwidth_mbps = bandwidth_mbps

    def configure(self, config: dict) -> None:
        """Apply a POST /_lab/faults document (see the module docstring)."""
        rules = config.get("rules")
        if rules is not None:
            faults = [
                Fault(
                    key=str(rule["key"]),
                    status=int(rule.get("status", 503)),
                    times=None if rule.get("times") is None else int(rule["times"]),
                    methods=rule.get("methods"),
                    code=rule.get("code"),
                    kind=str(rule.get("kind", "status")),
                    skip=int(rule.get("skip", 0)),
                    shift=int(rule.get("shift", 4096)),
                    seconds=float(rule.get("seconds", 0.0)),
                )
                for rule in rules
            ]
            with self._lock:
                self.faults = faults
        if "latency_ms" in config:
            self.latency_ms = float(config["latency_ms"] or 0)
        if "bandwidth_mbps" in config:
            value = config["bandwidth_mbps"]
            self.bandwidth_mbps = None if value is None else float(value)

    def fault_config(self) -> dict:
        """The current rules (with hits so far), latency and bandwidth cap."""
        with self._lock:
            rules = [
                {k: v for k, v in asdict(fault).items() if k != "replacements"}
                for fault in self.faults
            ]
        return {
            "rules": rules,
            "latency_ms": self.latency_ms,
            "bandwidth_mbps": self.bandwidth_mbps,
        }

    def _take_fault(self, method: str, bucket_key: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, bucket_key):
                    fault.seen += 1
                    if fault.seen <= fault.skip:
                        continue
                    fault.hits += 1
                    return fault
        return None


class S3Lab:
    """A moto server process plus an `S3Proxy` in front of it, as one context manager."""

    def __init__(
        self, latency_ms: float = 0.0, bandwidth_mbps: float | None = None, proxy_port: int = 0
    ) -> None:
        self.moto = MotoServer()
        self.latency_ms, self.bandwidth_mbps, self.proxy_port = (
            latency_ms,
            bandwidth_mbps,
            proxy_port,
        )
        self.proxy: S3Proxy | None = None

    @property
    def endpoint_url(self) -> str:
        """The proxy's URL: what clients under test use."""
        return self.proxy.url

    @property
    def moto_url(self) -> str:
        """moto's own URL: for setup that should not be counted."""
        return self.moto.url

    def start(self) -> S3Lab:
        self.moto.start()
        try:
            self.proxy = S3Proxy(
                self.moto.url, self.proxy_port, self.latency_ms, self.bandwidth_mbps
            ).start()
        except BaseException:
            self.moto.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.moto.stop()

    def __enter__(self) -> S3Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Clients ------------------------------------------------------------------------------
_AIO_SESSION: Any = None


def boto3_client(endpoint_url: str, **config: Any) -> Any:
    """A boto3 S3 client for `endpoint_url` with dummy credentials; `config` goes to Config."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(**config) if config else None,
    )


def s3_filesystem(endpoint_url: str, **kwargs: Any) -> Any:
    """A fresh (uncached) s3fs.S3FileSystem for `endpoint_url` with dummy credentials.

    `kwargs` go to S3FileSystem (e.g. default_block_size, default_cache_type,
    config_kwargs={"retries": {...}}). Filesystems share one aiobotocore session: a new
    one parses botocore's S3 model again (0.2-0.4 s).
    """
    import s3fs

    global _AIO_SESSION
    if "session" not in kwargs:
        if _AIO_SESSION is None:
            from aiobotocore.session import AioSession

            _AIO_SESSION = AioSession()
        kwargs["session"] = _AIO_SESSION
    client_kwargs = {
        "endpoint_url": endpoint_url,
        "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        **kwargs.pop("client_kwargs", {}),
    }
    return s3fs.S3FileSystem(
        key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        client_kwargs=client_kwargs,
        skip_instance_cache=True,
        **kwargs,
    )


def create_bucket(endpoint_url: str, bucket: str) -> None:
    """Create `bucket` (no error if it exists)."""
    client = boto3_client(endpoint_url)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


def upload_tree(
    endpoint_url: str, local_dir: Path | str, bucket: str, prefix: str = ""
) -> list[str]:
    """Upload every file under `local_dir` to s3://bucket/prefix/<relative path>; the keys."""
    client = boto3_client(endpoint_url)
    root = Path(local_dir)
    prefix = prefix.strip("/")
    keys = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        key = f"{prefix}/{relative}" if prefix else relative
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


class LabControl:
    """The control endpoint of a lab proxy in another process, over HTTP (stdlib only)."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")

    def _call(self, method: str, route: str, payload: object | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.endpoint_url}/_lab/{route}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("GET", "stats")

    def reset(self) -> dict:
        return self._call("POST", "reset", {})

    def faults(self) -> dict:
        return self._call("GET", "faults")

    def configure(self, config: dict) -> dict:
        return self._call("POST", "faults", config)

    def clear_faults(self) -> dict:
        return self._call("DELETE", "faults")


# CLI ----------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with S3Lab(args.latency_ms, args.bandwidth_mbps, args.port) as lab:
        uploaded = 0
        if args.bucket:
            create_bucket(lab.moto_url, args.bucket)
            for folder in args.upload:
                uploaded += len(upload_tree(lab.moto_url, folder, args.bucket, args.prefix))
        print(
            json.dumps(
                {
                    "endpoint_url": lab.endpoint_url,
                    "moto_url": lab.moto_url,
                    "control_url": f"{lab.endpoint_url}/_lab",
                    "bucket": args.bucket,
                    "uploaded": uploaded,
                    "pid": os.getpid(),
                }
            ),
            flush=True,
        )
        while not stop.wait(0.5):
            if lab.moto.process.poll() is not None:
                print("s3lab: moto server exited", file=sys.stderr)
                return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: `serve` runs a lab until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run moto + proxy; print the endpoint as JSON")
    serve.add_argument("--latency-ms", type=float, default=0.0, help="delay per response")
    serve.add_argument(
        "--bandwidth-mbps", type=float, default=None, help="cap per response body, MB/s"
    )
    serve.add_argument("--port", type=int, default=0, help="proxy port (default: a free one)")
    serve.add_argument("--bucket", help="create this bucket")
    serve.add_argument(
        "--upload", action="append", default=[], help="folder to upload into --bucket"
    )
    serve.add_argument("--prefix", default="", help="key prefix for --upload")
    args = parser.parse_args(argv)
    if args.upload and not args.bucket:
        parser.error("--upload needs --bucket")
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
