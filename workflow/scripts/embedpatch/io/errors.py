"""Why an image cannot be used: each error carries the rejection code the pipeline records."""

from __future__ import annotations

from embedpatch.reasons import RoiReason


class ImageError(Exception):
    """An image the pipeline cannot use; `reason` is the rejection code to record."""

    reason: RoiReason


class ImageMissing(ImageError):  # noqa: N818 - named after its reason code
    """The DICOM file or object does not exist."""

    reason = RoiReason.IMAGE_MISSING


class ImageUnreadable(ImageError):  # noqa: N818 - named after its reason code
    """Not a DICOM image, or its pixels cannot be read or decoded exactly."""

    reason = RoiReason.IMAGE_UNREADABLE


class ImageOutsideRoot(ImageError):  # noqa: N818 - named after its reason code
    """The file, symlinks resolved, is not below the DICOM root."""

    reason = RoiReason.IMAGE_OUTSIDE_ROOT


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and its message, whitespace collapsed."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
