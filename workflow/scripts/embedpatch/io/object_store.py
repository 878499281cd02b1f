"""Images and tables straight from an object store (s3://).

A DICOM in a bucket is read like a local file, through a `ByteSource`: one HEAD
gives its size and version (ETag, last-modified), then each read is a ranged GET
of exactly the bytes the reader asks for. Ranges closer than `coalesce_gap` are
fetched as one GET, and the GETs of one call run concurrently. Nothing is
downloaded whole.

No answer is trusted blindly (a misbehaving store must never give wrong pixels):
- every GET is pinned to the version the HEAD saw (`If-Match` with its ETag, and the
  answer's ETag compared); a replaced object raises `ImageChanged`, and
  `reread_if_changed` reads the image again from scratch once;
- every answer is checked before its bytes are used: status 206 (200 only when the
  whole object was asked), `Content-Range` start, end and total equal to the request
  and the object's size, body length equal to the range's;
- a mismatch, a short body, a reset, a timeout, a 5xx or throttling is tried again,
  `max_attempts` tries in all for each request (one retry loop: the client's own
  retries are off for images), then the image is `ImageUnavailable`, the detail naming
  what the store answered. Every try counts in `TRANSFER`.
Same-length corrupted bytes with a correct status and range cannot be seen here
(docs/faults.md says what a user can do).

Credentials come only from the standard AWS chain (environment, shared profile,
instance role); the config may set an endpoint, a region and anonymous access,
never a secret. The standard AWS variables are honoured, AWS_ENDPOINT_URL_S3 and
AWS_ENDPOINT_URL included. Tables are streamed through s3fs (botocore's standard
retries). Only s3:// (and s3a://) URLs are served.

Processes and threads: each process makes its own clients on first use (a forked
child never reuses its parent's connections), and reads go through whole-range
calls, never a shared file object, so threads may share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

from embedpatch.io.block_cache import BlockCache
from embedpatch.io.errors import (
    ImageError,
    ImageMissing,
    ImageOutsideRoot,
    ImageUnreadable,
    one_line,
)
from embedpatch.io.source import Range, check_range
from embedpatch.reasons import RoiReason

SCHEME_SEPARATOR = "://"
IMAGE_SCHEMES = ("s3", "s3a")
"""The schemes served: S3's answers carry what the checks above need."""

T = TypeVar("T")


class ImageUnavailable(ImageUnreadable):
    """The store refused the object or failed past the retries; a rerun tries it again."""

    reason = RoiReason.IMAGE_UNAVAILABLE


class ImageChanged(ImageError):  # noqa: N818 - named after its reason code
    """The object was replaced while it was being read; a rerun reads the new one."""

    reason = RoiReason.IMAGE_CHANGED


class StoreError(RuntimeError):
    """The object store cannot be used at all (credentials, endpoint, bucket): stops a run."""


def is_url(location: object) -> bool:
    """Whether `location` names an object in a store (`scheme://...`), not a local path."""
    return isinstance(location, str) and SCHEME_SEPARATOR in location


def scheme_of(url: str) -> str:
    """The scheme of `url` ("s3" for s3://bucket/key)."""
    return url.split(SCHEME_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class StoreOptions:
    """How to reach the store (the `storage` config section); no credential ever."""

    endpoint_url: str | None = None
    region: str | None = None
    anon: bool = False
    max_attempts: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_concurrency: int = 8
    coalesce_gap: int = 1 << 20
    cache_dir: str | None = None
    cache_size_gb: float = 20.0
    cache_block_size: int = 1 << 20

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> StoreOptions:
        """Options from a validated `storage` section (None: the defaults)."""
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in (section or {}).items() if key in known})


@dataclass
class Transfer:
    """Requests sent (every try) and body bytes received by this process, for the stage
    summaries."""

    requests: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests: int, received: int) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += received

    def as_dict(self) -> dict[str, int]:
        """{"requests": ..., "bytes": ...}."""
        return {"requests": self.requests, "bytes": self.bytes}


TRANSFER = Transfer()


@dataclass(frozen=True)
class ObjectVersion:
    """What one HEAD saw of an object; every read of the image is pinned to it."""

    url: str
    size: int
    etag: str
    last_modified: datetime | None

    @property
    def identity(self) -> str:
        """What changes when the object is replaced: ETag, size and last-modified time."""
        return f"{self.etag}|{self.size}|{self.last_modified or ''}"

    @property
    def bucket_key(self) -> tuple[str, str]:
        """(bucket, key) of the object."""
        bucket, _, key = self.url.split(SCHEME_SEPARATOR, 1)[1].partition("/")
        return bucket, key


class _BadAnswer(Exception):  # noqa: N818 - internal: a try to repeat, not an error
    """An answer that cannot be used as it is (another range, short body, ...)."""


_FINAL_STATUSES = {403, 404, 412}
"""Answers a new try cannot change: access denied, no such object, another version."""
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)$")


def _status_of(error: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError, None for any other exception."""
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return None
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _final_error(error: BaseException, url: str) -> Exception | None:
    """The pipeline's error for an answer a new try cannot change; None when worth a try."""
    status = _status_of(error)
    name = type(error).__name__
    if status == 404:
        return ImageMissing(f"{url}: no such object")
    if status == 403:
        return ImageUnavailable(f"{url}: access denied ({one_line(error)})")
    if status == 412:
        return ImageChanged(f"{url}: replaced while it was read (ETag no longer matches)")
    if "Credentials" in name or "NoRegion" in name:
        return ImageUnavailable(f"{url}: object store error ({one_line(error)})")
    if status is not None and 400 <= status < 500 and status not in (400, 408, 429):
        return ImageUnavailable(f"{url}: object store error ({one_line(error)})")
    return None


def _range_problem(
    answer: Mapping[str, Any], version: ObjectVersion, offset: int, length: int
) -> str | None:
    """Why a GET's answer does not hold bytes [offset, offset + length) of `version`."""
    status = answer.get("ResponseMetadata", {}).get("HTTPStatusCode")
    end = offset + length - 1
    asked = f"bytes={offset}-{end} of {version.size}"
    whole = offset == 0 and length == version.size
    if status == 200 and not whole:
        return f"answered 200 (the whole object, Range ignored) to {asked}"
    if status not in (200, 206):
        return f"answered status {status} to {asked}"
    if status == 206:
        content_range = answer.get("ContentRange") or ""
        match = _CONTENT_RANGE.match(content_range)
        if match is None or match.groups() != (str(offset), str(end), str(version.size)):
            return f"answered Content-Range {content_range!r} to {asked}"
    if answer.get("ContentLength") not in (None, length):
        return f"answered Content-Length {answer.get('ContentLength')} to {asked}"
    etag = answer.get("ETag")
    if version.etag and etag and etag != version.etag:
        raise ImageChanged(
            f"{version.url}: replaced while it was read (ETag {etag}, the HEAD saw {version.etag})"
        )
    return None


def _backoff(attempt: int) -> float:
    """Seconds to wait before try `attempt` (1, 2, ...): exponential, jittered, capped."""
    return min(5.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


class ObjectStore:
    """One store's connection settings and this process's clients.

    `filesystem(protocol)` streams tables (s3fs, botocore's standard retries);
    `head` and `get_ranges` read images with the checks of the module docstring.
    """

    def __init__(self, options: StoreOptions = StoreOptions()) -> None:
        self.options = options
        self._filesystems: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()
        self.cache = (
            None
            if options.cache_dir is None
            else BlockCache(
                options.cache_dir, int(options.cache_size_gb * 1e9), options.cache_block_size
            )
        )

    def filesystem(self, protocol: str) -> Any:
        """The fsspec filesystem for `protocol` (tables, listings), made once per process."""
        return self._made_once(protocol, lambda: self._new_filesystem(protocol, retries=True))

    def _image_filesystem(self) -> Any:
        """The s3fs filesystem images are read through: no retries of its own."""
        return self._made_once("s3-images", lambda: self._new_filesystem("s3", retries=False))

    def _made_once(self, name: str, make: Callable[[], Any]) -> Any:
        key = (os.getpid(), name)
        with self._lock:
            if key not in self._filesystems:
                self._filesystems[key] = make()
            return self._filesystems[key]

    def _new_filesystem(self, protocol: str, retries: bool) -> Any:
        import fsspec

        if protocol not in IMAGE_SCHEMES:
            raise StoreError(f"{protocol}:// is not supported: only s3:// object stores are")
        options = self.options
        endpoint = (
            options.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        # botocore's standard mode retries throttling and 5xx with backoff; its
        # total_max_attempts counts every try. Images keep one try per call: their
        # retry loop (`_tries`) also covers what botocore does not (bodies, ranges).
        attempts = options.max_attempts if retries else 1
        config = {
            "retries": {"total_max_attempts": attempts, "mode": "standard"},
            "connect_timeout": options.connect_timeout,
            "read_timeout": options.read_timeout,
        }
        filesystem = fsspec.filesystem(
            "s3",
            anon=options.anon,
            endpoint_url=endpoint,
            client_kwargs={"region_name": options.region} if options.region else {},
            config_kwargs=config,
            max_concurrency=options.max_concurrency,
            skip_instance_cache=True,
        )
        # s3fs retries throttled calls in a loop of its own around botocore's: off, so
        # a failing object costs max_attempts requests, not their square.
        filesystem.retries = 1
        return filesystem

    def filesystem_for(self, url: str) -> Any:
        """The filesystem serving `url` (its scheme's)."""
        return self.filesystem(scheme_of(url))

    # Images: pinned, checked, retried ------------------------------------------------
    def _run(self, coroutine: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `coroutine(client_of, *args)` on the image filesystem's event loop."""
        from fsspec.asyn import sync

        filesystem = self._image_filesystem()

        async def client_of(bucket: str) -> Any:
            await filesystem.set_session()
            return await filesystem.get_s3(bucket)

        return sync(filesystem.loop, coroutine, client_of, *args)

    async def _tries(self, url: str, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` tried up to max_attempts times in all; the last problem named."""
        problem = ""
        tries = self.options.max_attempts
        for number in range(tries):
            if number:
                await asyncio.sleep(_backoff(number))
            try:
                return await attempt()
            except ImageError:
                raise
            except _BadAnswer as bad:
                problem = str(bad)
            except Exception as error:  # the store's clients raise many kinds
                final = _final_error(error, url)
                if final is not None:
                    raise final from error
                problem = one_line(error)
        raise ImageUnavailable(
            f"{url}: object store error ({what}, {tries} tries; last: {problem})"
        )

    def head(self, url: str) -> ObjectVersion:
        """The object's size and version (one HEAD, retried)."""
        if scheme_of(url) not in IMAGE_SCHEMES:
            raise ImageUnavailable(
                f"{url}: images are read from s3:// only (its answers can be checked)"
            )
        version = ObjectVersion(url, 0, "", None)
        bucket, key = version.bucket_key
        if not key or key.endswith("/"):
            raise ImageMissing(f"{url}: not an object (a prefix?)")

        async def head(client_of: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
            client = await client_of(bucket)

            async def attempt() -> dict[str, Any]:
                TRANSFER.add(1, 0)
                return await client.head_object(Bucket=bucket, Key=key)

            return await self._tries(url, "HEAD", attempt)

        answer = self._run(head)
        return ObjectVersion(
            url, int(answer["ContentLength"]), answer.get("ETag") or "", answer.get("LastModified")
        )

    def get_ranges(self, version: ObjectVersion, ranges: Sequence[Range]) -> list[bytes]:
        """Each range's bytes of exactly `version`, one checked GET per range, concurrently."""
        if not ranges:
            return []
        bucket, key = version.bucket_key
        limit = asyncio.Semaphore(self.options.max_concurrency)

        async def get(client: Any, offset: int, length: int) -> bytes:
            if length == 0:
                return b""
            pinned = {"IfMatch": version.etag} if version.etag else {}

            async def attempt() -> bytes:
                TRANSFER.add(1, 0)
                answer = await client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}", **pinned
                )
                body = answer["Body"]
                try:
                    problem = _range_problem(answer, version, offset, length)
                    if problem is not None:
                        raise _BadAnswer(problem)
                    data = await body.read()
                finally:
                    body.close()
                TRANSFER.add(0, len(data))
                if len(data) != length:
                    raise _BadAnswer(f"sent {len(data)} of {length} bytes at {offset}")
                return data

            async with limit:
                return await self._tries(version.url, f"GET bytes {offset}+{length}", attempt)

        async def get_all(client_of: Callable[[str], Awaitable[Any]]) -> list[bytes]:
            client = await client_of(bucket)
            return await asyncio.gather(*(get(client, *r) for r in ranges))

        return self._run(get_all)


def coalesce(ranges: Sequence[Range], gap: int) -> tuple[list[Range], list[tuple[int, int, int]]]:
    """Ranges merged when closer than `gap` bytes, and for each input range (merged range,
    start within it, length), so its bytes can be cut out of the merged one."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    merged: list[list[int]] = []
    where = [(0, 0, 0)] * len(ranges)
    for i in order:
        offset, length = ranges[i]
        if merged and offset <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
        where[i] = (len(merged) - 1, offset - merged[-1][0], length)
    return [(start, end - start) for start, end in merged], where


def url_inside(url: str, root: str) -> bool:
    """Whether `url` names an object strictly below the `root` URL (no `..` parts)."""
    prefix = root.rstrip("/") + "/"
    rest = url[len(prefix) :]
    return url.startswith(prefix) and bool(rest) and ".." not in rest.split("/")


class ObjectSource:
    """One object of a store as a ByteSource, pinned to the version its HEAD saw."""

    def __init__(self, url: str, store: ObjectStore, root: str | None = None) -> None:
        if root is not None and not url_inside(url, root):
            raise ImageOutsideRoot(f"{url}: outside the DICOM root {root}")
        self.name = url
        self._store = store
        self.gap = store.options.coalesce_gap
        self.version = store.head(url)
        self.size = self.version.size

    def read(self, offset: int, length: int) -> bytes:
        (data,) = self.read_ranges([(offset, length)])
        return data

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes]:
        for offset, length in ranges:
            check_range(self, offset, length)
        cache = self._store.cache
        if cache is None:
            return self._fetch(ranges)
        return cache.read_ranges(self.name, self.version.identity, self.size, ranges, self._fetch)

    def _fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        """Each range's bytes from the store, nearby ranges fetched as one GET."""
        merged, where = coalesce(ranges, self.gap)
        chunks = self._store.get_ranges(self.version, merged)
        return [chunks[index][start : start + length] for index, start, length in where]

    def close(self) -> None:
        """Nothing to release: requests hold no state between reads."""


def reread_if_changed(read: Callable[[], T]) -> T:
    """`read()`, and once more from scratch (a new HEAD, a new layout) if the object was
    replaced meanwhile; a second change is the caller's ImageChanged."""
    try:
        return read()
    except ImageChanged:
        return read()


_store = ObjectStore()


def configure(options: StoreOptions) -> None:
    """Set how this process reaches object stores."""
    global _store
    _store = ObjectStore(options)


def configure_from(config: Mapping[str, Any]) -> None:
    """Set how this process reaches object stores from a validated config (rule scripts
    call it with `snakemake.config`)."""
    configure(StoreOptions.from_config(config.get("storage")))


def _preflight_problem(what: str, url: str, error: BaseException) -> str:
    """One line saying why `url` cannot be used and what to set."""
    name = type(error).__name__
    if "Credentials" in name or "credentials" in str(error).lower():
        return (
            f"no usable AWS credentials for {what} {url}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an instance role applies "
            "(storage.anon: true only for public buckets)"
        )
    if isinstance(error, PermissionError):
        return (
            f"access to {what} {url} was refused: the credentials found may not read it "
            "(EMBED's bucket needs an approved access request; check AWS_PROFILE)"
        )
    if isinstance(error, FileNotFoundError):
        return f"{what} {url} does not exist: check the bucket name and prefix"
    return (
        f"cannot reach the object store for {what} {url} ({one_line(error)}): check "
        "storage.endpoint_url or AWS_ENDPOINT_URL, storage.region, and the network"
    )


def preflight(locations: Mapping[str, str]) -> None:
    """Check that every object store location answers (one request each); StoreError with
    one line naming what to set otherwise. `locations`: what it is -> URL."""
    for what, url in locations.items():
        if scheme_of(url) not in IMAGE_SCHEMES:
            raise StoreError(
                f"{what} {url}: only s3:// object stores are supported (their answers "
                "carry the versions and ranges every read is checked against)"
            )
        try:
            _store.filesystem_for(url).info(url)
        except Exception as error:  # the store's clients raise many kinds
            raise StoreError(_preflight_problem(what, url, error)) from error


def current_store() -> ObjectStore:
    """The store configured for this process (defaults until `configure` is called)."""
    return _store


TABLE_BLOCK_BYTES = 16 << 20
"""Block size of streamed tables: one GET per 16 MiB of a metadata CSV."""


@contextlib.contextmanager
def open_stream(url: str, block_size: int = TABLE_BLOCK_BYTES) -> Iterator[BinaryIO]:
    """A table object opened for sequential reading (read-ahead blocks of `block_size`),
    closed on exit; its HEAD and the blocks it fetched are counted in TRANSFER."""
    filesystem = _store.filesystem_for(url)
    TRANSFER.add(1, 0)  # the HEAD of open
    with filesystem.open(url, "rb", block_size=block_size, cache_type="readahead") as file:
        cache = file.cache  # kept: closing the file (pyarrow does) drops it
        try:
            yield file
        finally:
            TRANSFER.add(cache.miss_count, cache.total_requested_bytes)


def identity(url: str) -> str:
    """The identity (ETag, size, last-modified) of the object at `url`: one HEAD."""
    return _store.head(url).identity


def modified_ns(url: str) -> int:
    """When the object at `url` was last written, in ns since the epoch (one HEAD)."""
    modified = _store.head(url).last_modified
    if modified is None:
        raise ImageUnavailable(f"{url}: the store gives no last-modified time")
    return int(modified.timestamp() * 1e9)


def open_object(url: str, root: str | None = None) -> ObjectSource:
    """The object at `url` as a ByteSource, refused unless below the `root` URL when given."""
    return ObjectSource(url, _store, root)
