"""What extraction is asked to do: an exam's specification and the patch settings, typed.

`ExamSpec` (its images, their ROIs, negative windows and boxes to avoid) and
`PatchSettings` (the `patches` config section) are pydantic models: they check
themselves when built or read, and write themselves as canonical JSON (`to_json`:
sorted keys, no spaces). That JSON is what a Snakemake extraction job receives as
a parameter and what each shard records the hash of, so it must stay byte-identical
for the same content: a change reruns every batch and rewrites every shard.

The JSON form of an exam, keys as in the tables:

    {"acc_anon": int, "empi_anon": int, "images": [
        {"anon_dicom_path": str, "dicom_path": str, "FinalImageType": "2D" | "cview" | "3D",
         "ImageLateralityFinal": str | null, "ViewPosition": str | null,
         "rois": [{"roi_index": int, "ymin": int, "xmin": int, "ymax": int, "xmax": int,
                   "frames": [int, ...]}],
         "negatives": int, "avoid": [[ymin, xmin, ymax, xmax], ...]}]}

Every key is required and no other is allowed; integers must be integers (not
booleans, floats or text). A specification that breaks a rule raises SpecError: it
is a bug upstream (the stage-2 tables it is built from are validated), never data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from embedpatch.geometry import Box
from embedpatch.patches.identity import canonical_json
from embedpatch.vocab import FLAT_TYPES, IMAGE_TYPE, IMAGE_TYPES, LATERALITY, VIEW

PADDING_MODES = ("tissue", "black")
DBT_FRAMES = ("all", "center")
PIXEL_VALUES = ("stored", "monochrome2", "windowed_uint8")

NonNegative = Annotated[StrictInt, Field(ge=0)]
SpecBox = tuple[StrictInt, StrictInt, StrictInt, StrictInt]


class SpecError(ValueError):
    """A malformed exam specification or patch settings: a bug upstream, never data."""


def _problem(error: Mapping[str, Any]) -> str:
    """One pydantic error as 'images.0.rois.1.ymin: Input should be a valid integer'."""
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _spec_error(what: str, error: ValidationError) -> SpecError:
    """One line naming each offending key and what was wrong with it."""
    return SpecError(f"{what}: {'; '.join(_problem(problem) for problem in error.errors())}")


class _Spec(BaseModel):
    """A frozen model read from and written as its JSON form (field aliases are its keys)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )
    WHAT: ClassVar[str] = "specification"

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """The model of its JSON form (a mapping); SpecError if it breaks a rule."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise _spec_error(cls.WHAT, error) from None

    @classmethod
    def from_json(cls, text: str) -> Self:
        """The model of its JSON text; SpecError if it is not valid JSON or breaks a rule."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"{cls.WHAT}: not JSON ({error})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `from_dict` reads."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        """The canonical JSON text (`canonical_json` of `to_dict`)."""
        return canonical_json(self.to_dict())


class RoiSpec(_Spec):
    """One accepted ROI: pixels [ymin:ymax, xmin:xmax] on `frames` (0-based; 3D only)."""

    WHAT: ClassVar[str] = "ROI"

    roi_index: NonNegative
    ymin: StrictInt
    xmin: StrictInt
    ymax: StrictInt
    xmax: StrictInt
    frames: tuple[NonNegative, ...]

    @model_validator(mode="after")
    def _box_inside(self) -> Self:
        if not (0 <= self.ymin < self.ymax and 0 <= self.xmin < self.xmax):
            raise ValueError(
                f"ROI {self.roi_index}: box {self.box} is empty or has negative coordinates"
            )
        return self

    @property
    def box(self) -> Box:
        """The box as ``(ymin, xmin, ymax, xmax)``."""
        return (self.ymin, self.xmin, self.ymax, self.xmax)


class ImageSpec(_Spec):
    """One image of an exam: where to read it, its ROIs, and its negative windows."""

    WHAT: ClassVar[str] = "image"

    anon_dicom_path: StrictStr
    dicom_path: StrictStr
    image_type: Literal[IMAGE_TYPES] = Field(alias=IMAGE_TYPE)
    laterality: StrictStr | None = Field(alias=LATERALITY)
    view: StrictStr | None = Field(alias=VIEW)
    rois: tuple[RoiSpec, ...]
    negatives: NonNegative
    """Negative windows to draw (2D / C-view only)."""
    avoid: tuple[SpecBox, ...]
    """Boxes negative windows keep away from (the ROIs, and the mirror of a suspected flip)."""

    @model_validator(mode="after")
    def _rois_fit_the_type(self) -> Self:
        flat = self.image_type in FLAT_TYPES
        indices = [roi.roi_index for roi in self.rois]
        if len(set(indices)) != len(indices):
            raise ValueError(f"{self.anon_dicom_path}: duplicate roi_index in {indices}")
        for roi in self.rois:
            if flat == bool(roi.frames):
                raise ValueError(
                    f"{self.anon_dicom_path}: ROI {roi.roi_index} of a {self.image_type} image "
                    f"has frames {list(roi.frames)}; frames are required for 3D, absent otherwise"
                )
        if self.negatives and not flat:
            raise ValueError(f"{self.anon_dicom_path}: negative windows on a 3D image")
        return self


class ExamSpec(_Spec):
    """Everything that decides one exam's patches (its extraction job gets it as JSON)."""

    WHAT: ClassVar[str] = "exam"

    acc_anon: StrictInt
    empi_anon: StrictInt
    images: tuple[ImageSpec, ...]

    @model_validator(mode="after")
    def _images_once(self) -> Self:
        paths = [image.anon_dicom_path for image in self.images]
        if len(set(paths)) != len(paths):
            raise ValueError(f"exam {self.acc_anon}: an image is listed twice")
        return self


class PatchSettings(_Spec):
    """How patches are cut and stored (the `patches` config section)."""

    WHAT: ClassVar[str] = "patch settings"
    UPSTREAM: ClassVar[tuple[str, ...]] = ("negatives_per_image", "negative_images", "batches")
    """Keys of the config section that decide the specifications or the jobs, not the
    shards' content: accepted by `from_dict` and left out."""

    size: Annotated[StrictInt, Field(ge=1)]
    padding: tuple[Literal[PADDING_MODES], ...] = Field(min_length=1)
    dbt_frames: Literal[DBT_FRAMES]
    """"all" listed frames, or "center": frames[len // 2] of the sorted list."""
    negative_margin: NonNegative
    """Pixels kept between a negative window and every avoid box."""
    seed: NonNegative
    pixel_values: Literal[PIXEL_VALUES]
    compression: StrictStr = Field(default_factory=lambda: _compressions()[1])

    @model_validator(mode="before")
    @classmethod
    def _without_upstream_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if key not in cls.UPSTREAM}
        return data

    @field_validator("padding")
    @classmethod
    def _distinct(cls, padding: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(padding)) != len(padding):
            raise ValueError(f"padding modes must be distinct, got {list(padding)}")
        return padding

    @field_validator("compression")
    @classmethod
    def _known_compression(cls, compression: str) -> str:
        names, _ = _compressions()
        if compression not in names:
            raise ValueError(f"compression must be one of {names}, got {compression!r}")
        return compression

    @classmethod
    def settings_json(cls, section: Mapping[str, Any]) -> str:
        """The settings of a validated `patches` config section as canonical JSON, without
        validating them (the Snakemake process building the jobs does not import the
        shard writer; each extraction job validates them with `from_json`)."""
        return canonical_json({key: section[key] for key in cls.model_fields if key in section})


def _compressions() -> tuple[list[str], str]:
    """The shard writer's compression names and its default. Imported on first use: the
    shard writer brings h5py, which building the jobs' specifications does not need."""
    from embedpatch.patches.shards import COMPRESSIONS, DEFAULT_COMPRESSION

    return list(COMPRESSIONS), DEFAULT_COMPRESSION
