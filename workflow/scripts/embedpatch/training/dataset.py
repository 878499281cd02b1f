"""Read the patch shards for training: a map-style dataset over the manifest, torch optional.

`PatchDataset` selects manifest rows (label, image type, padding, view, laterality,
patient split, any clinical condition) and reads each patch from its shard on demand,
as stored (its manifest row's `dtype`: images of several pixel types give patches of
several dtypes) or cast to one dtype that holds every selected patch exactly.
Shards are read through a `ShardPool` (embedpatch.training.shard_pool): opened on
demand, kept open in a small per-process LRU cache, each checked against the manifest's
`patches_sha256` when opened, so a shard deleted or replaced after the manifest was
written is an error naming it, never other pixels; safe to fork and to pickle.
`as_torch` / `torch_dataset` wrap it for `torch.utils.data.DataLoader`; torch is
imported only when a torch item is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedpatch.patches.shards import casts_losslessly, common_dtype
from embedpatch.training.shard_pool import DEFAULT_CACHE_SIZE, REBUILD, Locking, ShardPool
from embedpatch.training.splits import SPLITS, SPLITS_FILE, read_splits

MANIFEST_FILE = "manifest.parquet"

Selection = str | Iterable[str] | None
Where = str | Callable[[pd.DataFrame], Any] | None


def manifest_path(source: str | Path) -> Path:
    """The manifest of a results folder, or `source` itself if it is a file."""
    path = Path(source)
    return path / MANIFEST_FILE if path.is_dir() else path


def _mask(column: pd.Series, selection: str | Iterable[str], known: Iterable[str]) -> pd.Series:
    """Rows whose value is one of `selection`; a value not in `known` is an error (typo guard)."""
    wanted = [selection] if isinstance(selection, str) else list(selection)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(
            f"{column.name}: no patch has {unknown}; values: {sorted(set(known), key=str)}"
        )
    return column.isin(wanted)


def _with_splits(manifest: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The manifest with each patient's `split` from the splits table at `path`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no splits table (Snakemake rule make_splits writes it)")
    merged = manifest.merge(read_splits(path), on="empi_anon", how="left", validate="many_to_one")
    if merged["split"].isna().any():
        raise ValueError(f"{path}: patients of the manifest without a split (an older table?)")
    return merged


def select_patches(
    manifest: pd.DataFrame,
    selections: dict[str, Selection],
    where: Where = None,
    known: dict[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Rows of `manifest` whose columns take the selected values and that satisfy `where`.

    `selections` maps column -> value or values (None: any); `known` gives a column's
    admissible values (default: those present). `where` is a DataFrame.eval expression
    or a callable (manifest -> boolean mask); rows where it is missing are dropped.
    """
    keep = pd.Series(True, index=manifest.index)
    for column, selection in selections.items():
        if selection is not None:
            values = (known or {}).get(column, manifest[column].dropna())
            keep &= _mask(manifest[column], selection, values)
    if where is not None:
        chosen = manifest.eval(where) if isinstance(where, str) else where(manifest)
        keep &= pd.Series(chosen, index=manifest.index).astype("boolean").fillna(False)
    return manifest[keep.to_numpy(bool)].reset_index(drop=True)


def _column_array(values: pd.Series) -> np.ndarray:
    """A column for fast item access: numpy numbers when complete, else objects with None."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not values.hasnans:
        return values.to_numpy()
    return values.to_numpy(object, na_value=None)


def served_dtype(manifest: pd.DataFrame, dtype: Any) -> np.dtype | None:
    """The dtype patches of `manifest` are served in: None (each as stored), the lossless
    common dtype of those stored ("common"), or `dtype` itself, after checking that every
    stored dtype casts to it exactly (ValueError naming those that do not)."""
    if dtype is None:
        return None
    if "dtype" not in manifest:
        raise ValueError("the manifest has no dtype column (an older one): rerun collect_patches")
    stored = manifest["dtype"].value_counts()
    if isinstance(dtype, str) and dtype == "common":
        return common_dtype(stored.index) if len(stored) else None
    target = np.dtype(dtype)
    lossy = {
        name: int(count) for name, count in stored.items() if not casts_losslessly(name, target)
    }
    if lossy:
        raise ValueError(
            f"patches of dtype {lossy} (dtype: count) do not all fit {target} exactly; "
            "ask for dtype='common', or a wider dtype"
        )
    return target


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class PatchDataset:
    """The manifest's patches, filtered; `dataset[i]` is (patch, metadata row as a dict).

    `source` is a results folder or its manifest.parquet. Each filter takes a value or a
    list of values: `label` (roi / negative), `image_type` (FinalImageType: 2D, cview,
    3D), `padding` (tissue / black), `view` (ViewPosition), `laterality`
    (ImageLateralityFinal), `split` (train / validation / test, from splits.parquet
    beside the manifest); `where` is a pandas expression or a callable on the manifest
    (e.g. "clin_asses_worst in ['S', 'M']"). `dtype`: None serves each patch as stored
    (its row's `dtype`), "common" casts every patch to the lossless common dtype of the
    selection (as the combined file does), a numpy dtype to that one, refused unless
    every selected patch fits it exactly (`dataset.dtype` is the one served, or None).
    `transform` is applied to each patch, after the cast. `cache_size`: shards kept open
    per process; `locking`: how shards are opened (`Locking`; the default lets plain
    h5py open them beside the dataset). A shard missing or other than the manifest's
    (`patches_sha256`) raises MissingShardError or StaleShardError when read.
    The selected rows are `dataset.manifest`; row i describes item i.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        label: Selection = None,
        image_type: Selection = None,
        padding: Selection = None,
        view: Selection = None,
        laterality: Selection = None,
        split: Selection = None,
        where: Where = None,
        dtype: Any = None,
        transform: Callable[[np.ndarray], Any] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        locking: Locking = None,
    ) -> None:
        path = manifest_path(source)
        self.root = path.parent
        manifest = pd.read_parquet(path, dtype_backend="numpy_nullable")
        if split is not None:
            manifest = _with_splits(manifest, self.root / SPLITS_FILE)
        selections = {
            "label": label,
            "FinalImageType": image_type,
            "padding": padding,
            "ViewPosition": view,
            "ImageLateralityFinal": laterality,
            "split": split,
        }
        self.manifest = select_patches(manifest, selections, where, known={"split": SPLITS})
        self.dtype = served_dtype(self.manifest, dtype)
        self.transform = transform
        if "patches_sha256" not in self.manifest:
            raise ValueError(f"{path}: a manifest without patches_sha256 (older); {REBUILD}")
        codes, shards = pd.factorize(self.manifest["shard"])
        digests = self.manifest.groupby(codes, sort=True)["patches_sha256"].first()
        self._shard_codes = codes
        self._indexes = self.manifest["index"].to_numpy(np.int64)
        self._columns = {name: _column_array(self.manifest[name]) for name in self.manifest}
        self.shards = ShardPool(
            [str(self.root / shard) for shard in shards],
            digests.tolist(),
            cache_size=cache_size,
            locking=locking,
        )

    def __len__(self) -> int:
        return len(self._indexes)

    def __getitem__(self, position: int) -> tuple[Any, dict[str, Any]]:
        patch = self.patch(position)
        row = {name: _python(values[position]) for name, values in self._columns.items()}
        return (patch if self.transform is None else self.transform(patch)), row

    def patch(self, position: int) -> np.ndarray:
        """The patch of item `position`, as stored or cast to `dtype` (no transform)."""
        index = self._indexes[position]  # IndexError before any file is opened
        patch = self.shards.patches(int(self._shard_codes[position]))[index]
        return patch if self.dtype is None else patch.astype(self.dtype, copy=False)

    def close(self) -> None:
        """Close the shards this object holds open (reading reopens them)."""
        self.shards.close()


def _missing_value(dtype: Any) -> Any:
    """What a missing value of `dtype` becomes for torch's default collate (None cannot)."""
    if pd.api.types.is_integer_dtype(dtype):
        return -1
    return math.nan if pd.api.types.is_float_dtype(dtype) else ""


class TorchPatches:
    """A PatchDataset for torch DataLoaders: (patch tensor, metadata dict) per item.

    The patch becomes a float32 tensor (1, size, size), whatever its stored dtype (exact
    for integers of up to 24 bits: every DICOM mammogram's), unless the dataset's
    transform already returns something else than a numpy array (passed through). Metadata holds
    `columns` (default: every manifest column); missing values, which the default
    collate cannot batch, become "" (text), -1 (integers) or NaN (floats).
    """

    def __init__(self, dataset: PatchDataset, columns: Sequence[str] | None = None) -> None:
        self.dataset = dataset
        names = list(dataset.manifest.columns) if columns is None else list(columns)
        self._fills = {name: _missing_value(dataset.manifest[name].dtype) for name in names}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> tuple[Any, dict[str, Any]]:
        import torch  # optional dependency: only torch users need it

        patch, row = self.dataset[position]
        if isinstance(patch, np.ndarray):
            patch = torch.from_numpy(patch.astype(np.float32))[None]
        metadata = {
            name: fill if row[name] is None else row[name] for name, fill in self._fills.items()
        }
        return patch, metadata


def as_torch(dataset: PatchDataset, columns: Sequence[str] | None = None) -> TorchPatches:
    """`dataset` for torch.utils.data.DataLoader (any num_workers); see TorchPatches."""
    return TorchPatches(dataset, columns)


def torch_dataset(
    source: str | Path, *, columns: Sequence[str] | None = None, **options: Any
) -> TorchPatches:
    """PatchDataset(source, **options) for torch; see TorchPatches."""
    return as_torch(PatchDataset(source, **options), columns)
