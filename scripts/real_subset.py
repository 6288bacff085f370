"""Write the real VMs that the shipped model's third stage trains on (or another number of them).

Usage: python scripts/real_subset.py REAL.parquet OUT.parquet [VMS]

VMS (default 36) of the shared real set's VMs (drawn with a fixed seed, so the same ones every
run; all of them when VMS is the set's count), without the set's last 7 days: those days are the
real-data section's held-out week.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from linborg.contract import SERVER, TIMESTAMP
from linborg.parquet import read_metrics, write_metrics

VMS = 36
SEED = 2026
HOLDOUT_DAYS = 7


def main(real: str, out: str, vms: int = VMS) -> None:
    frame, _ = read_metrics(real, allow_missing=True, repair=True)
    names = sorted(frame[SERVER].astype(str).unique())
    if not 0 < vms <= len(names):
        sys.exit(f"real_subset: VMS must be 1 to {len(names)}, not {vms}")
    picked = set(np.random.default_rng(SEED).choice(names, vms, replace=False))
    cut = frame[TIMESTAMP].max() - pd.Timedelta(days=HOLDOUT_DAYS)
    keep = frame[SERVER].astype(str).isin(picked) & (frame[TIMESTAMP] <= cut)
    write_metrics(frame[keep], out, allow_missing=True)
    print(f"real_subset: {vms} of {len(names)} VMs up to {cut:%Y-%m-%d %H:%M} UTC -> {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or not all(a.isdigit() for a in sys.argv[3:]):
        sys.exit(__doc__.strip().splitlines()[2])
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
