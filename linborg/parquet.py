"""Read and write metrics tables as Parquet, with the contract version in the file metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from linborg.contract import CONTRACT_VERSION, ContractError, check_contract_version
from linborg.validate import tidy, validate

#: Key of the JSON document this project stores in a Parquet file's schema metadata.
METADATA_KEY = b"linborg"


def write_metrics(
    frame: pd.DataFrame,
    path: str | Path,
    metadata: dict | None = None,
    *,
    allow_missing: bool = False,
) -> Path:
    """Validate ``frame`` and write it to ``path`` with the contract version and ``metadata``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    validate(frame, allow_missing=allow_missing, source="table to write")
    doc = {**(metadata or {}), "contract_version": CONTRACT_VERSION}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(doc, sort_keys=True).encode()}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict:
    """Return the LINBORG metadata of a Parquet file after checking its contract version."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: no such file")
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise ContractError(f"{path}: not a readable Parquet file ({err})") from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    try:
        doc = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise ContractError(f"{path}: the LINBORG metadata in this file is corrupt")
    check_contract_version(doc.get("contract_version"), str(path))
    return doc


def read_metrics(
    path: str | Path, *, allow_missing: bool = False, repair: bool = False
) -> tuple[pd.DataFrame, dict]:
    """Return (frame, metadata) from a Parquet file written under this contract, validated.

    With ``repair`` the file's blemishes are repaired first (``linborg.validate.tidy``:
    out-of-range samples become missing, off-grid timestamps snap to the grid) and the counts
    are kept in ``frame.attrs["repaired"]``.
    """
    import pyarrow.parquet as pq

    doc = read_metadata(path)
    frame = pq.read_table(path).to_pandas()
    counts = None
    if repair:
        frame, counts = tidy(frame)
    validate(frame, allow_missing=allow_missing, source=str(path))
    if counts is not None:
        frame.attrs["repaired"] = counts
    return frame, doc
