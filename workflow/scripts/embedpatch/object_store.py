"""Images and tables straight from an object store (s3:// and other fsspec URLs).

A DICOM in a bucket is read like a local file, through a `ByteSource`: one HEAD
gives its size and identity (ETag, last-modified), then each read is a ranged GET
of exactly the bytes the reader asks for. Ranges closer than `coalesce_gap` are
fetched as one GET, and the GETs of one call run concurrently. Nothing is
downloaded whole.

Credentials come only from the standard AWS chain (environment, shared profile,
instance role); the config may set an endpoint, a region and anonymous access,
never a secret. The standard AWS variables are honoured, AWS_ENDPOINT_URL_S3 and
AWS_ENDPOINT_URL included. Retries and timeouts are bounded (`StoreOptions`).

Processes and threads: each process makes its own filesystem object on first use
(a forked child never reuses its parent's connections), and reads go through
whole-range calls, never a shared file object, so threads may share it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from embedpatch.block_cache import BlockCache
from embedpatch.dicom.errors import ImageMissing, ImageOutsideRoot, ImageUnreadable, one_line
from embedpatch.dicom.source import Range, check_range
from embedpatch.reasons import RoiReason

SCHEME_SEPARATOR = "://"


class ImageUnavailable(ImageUnreadable):
    """The store refused the object or failed past the retries; a rerun tries it again."""

    reason = RoiReason.IMAGE_UNAVAILABLE


class StoreError(RuntimeError):
    """The object store cannot be used at all (credentials, endpoint, bucket): stops a run."""


def is_url(location: object) -> bool:
    """Whether `location` names an object in a store (`scheme://...`), not a local path."""
    return isinstance(location, str) and SCHEME_SEPARATOR in location


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
    """Requests sent and body bytes received by this process, for the stage summaries."""

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


def _map_error(error: BaseException, url: str) -> Exception:
    """The pipeline's error for a failed request on `url`."""
    if isinstance(error, FileNotFoundError):
        return ImageMissing(f"{url}: no such object")
    if isinstance(error, PermissionError):
        return ImageUnavailable(f"{url}: access denied ({one_line(error)})")
    return ImageUnavailable(f"{url}: object store error ({one_line(error)})")


class ObjectStore:
    """One store's connection settings; `filesystem()` is this process's client."""

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
        """The fsspec filesystem for `protocol`, made once per process."""
        key = (os.getpid(), protocol)
        with self._lock:
            if key not in self._filesystems:
                self._filesystems[key] = self._new_filesystem(protocol)
            return self._filesystems[key]

    def _new_filesystem(self, protocol: str) -> Any:
        import fsspec

        if protocol not in ("s3", "s3a"):
            return fsspec.filesystem(protocol, skip_instance_cache=True)
        options = self.options
        endpoint = (
            options.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        # botocore's standard mode retries throttling and 5xx with backoff; its
        # total_max_attempts counts every try (max_attempts would count retries only).
        config = {
            "retries": {"total_max_attempts": options.max_attempts, "mode": "standard"},
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
        return self.filesystem(url.split(SCHEME_SEPARATOR, 1)[0])

    def info(self, url: str) -> dict[str, Any]:
        """The object's metadata (one HEAD): size, ETag, LastModified, ..."""
        try:
            info = self.filesystem_for(url).info(url)
        except Exception as error:  # the store's clients raise many kinds
            raise _map_error(error, url) from error
        finally:
            TRANSFER.add(1, 0)
        if info.get("type") != "file":
            raise ImageMissing(f"{url}: not an object (a prefix?)")
        return info

    def read_ranges(self, url: str, ranges: Sequence[Range]) -> list[bytes]:
        """Each range's bytes, fetched concurrently, one GET per range."""
        if not ranges:
            return []
        starts = [offset for offset, _ in ranges]
        ends = [offset + length for offset, length in ranges]
        try:
            if len(ranges) == 1:
                chunks = [self.filesystem_for(url).cat_file(url, start=starts[0], end=ends[0])]
            else:
                chunks = self.filesystem_for(url).cat_ranges([url] * len(ranges), starts, ends)
        except Exception as error:  # the store's clients raise many kinds
            raise _map_error(error, url) from error
        failed = [chunk for chunk in chunks if isinstance(chunk, BaseException)]
        TRANSFER.add(len(ranges), sum(len(c) for c in chunks if isinstance(c, bytes)))
        if failed:
            raise _map_error(failed[0], url) from failed[0]
        return chunks


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
    """One object of a store as a ByteSource; `identity` changes when the object does."""

    def __init__(self, url: str, store: ObjectStore, root: str | None = None) -> None:
        if root is not None and not url_inside(url, root):
            raise ImageOutsideRoot(f"{url}: outside the DICOM root {root}")
        self.name = url
        self._store = store
        self.gap = store.options.coalesce_gap
        info = store.info(url)
        self.size = int(info["size"])
        self.identity = object_identity(info)

    def read(self, offset: int, length: int) -> bytes:
        (data,) = self.read_ranges([(offset, length)])
        return data

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes]:
        for offset, length in ranges:
            check_range(self, offset, length)
        cache = self._store.cache
        if cache is None:
            return self._fetch(ranges)
        return cache.read_ranges(self.name, self.identity, self.size, ranges, self._fetch)

    def _fetch(self, ranges: Sequence[Range]) -> list[bytes]:
        """Each range's bytes from the store, nearby ranges fetched as one GET."""
        merged, where = coalesce(ranges, self.gap)
        chunks = self._store.read_ranges(self.name, merged)
        for (offset, length), chunk in zip(merged, chunks, strict=True):
            if len(chunk) != length:
                raise ImageUnreadable(f"{self.name}: {len(chunk)} of {length} bytes at {offset}")
        return [chunks[index][start : start + length] for index, start, length in where]

    def close(self) -> None:
        """Nothing to release: requests hold no state between reads."""


def object_identity(info: Mapping[str, Any]) -> str:
    """What changes when an object is replaced: its ETag, size and last-modified time."""
    modified = info.get("LastModified") or info.get("last_modified") or ""
    return f"{info.get('ETag', '')}|{info.get('size', '')}|{modified}"


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
    return object_identity(_store.info(url))


def modified_ns(url: str) -> int:
    """When the object at `url` was last written, in ns since the epoch (one HEAD)."""
    modified = _store.info(url).get("LastModified")
    if modified is None:
        raise ImageUnavailable(f"{url}: the store gives no last-modified time")
    return int(modified.timestamp() * 1e9)


def open_object(url: str, root: str | None = None) -> ObjectSource:
    """The object at `url` as a ByteSource, refused unless below the `root` URL when given."""
    return ObjectSource(url, _store, root)
