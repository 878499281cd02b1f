"""Bytes and tables in and out, wherever they live: no DICOM, no stage logic.

`atomic` (a file or folder appears complete under its final name, or not at all),
`tables` (EMBED CSV / Parquet readers with deliberate types), `paths` (the table's
image paths mapped onto the DICOM root), `source` (`ByteSource`: exact byte ranges of one
local file), `object_store` (the same from s3://, every answer checked and pinned to
the object's ETag), `identity` (a file's size and time or an object's ETag: has it
changed?), `block_cache` (a local, size-bounded cache of store bytes), `errors`
(why an image cannot be used, each with its rejection code).
"""
