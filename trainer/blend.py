"""Blend two bundles of one network: every weight interpolated between them, a new bundle out.

``weight`` 0 gives the first bundle's weights, 1 the second's. Both must be the same network
(the same hyperparameters and contract); the second is normally a continuation of the first
(``linborg train --init``), so both lie near one another and their average is a network that
forecasts, not noise. The new bundle keeps the second bundle's training summary and lineage,
with a ``blend`` entry naming both parents and the weight. Its p10-p90 band and risk ceilings
belong to neither parent: they are dropped, and ``linborg calibrate`` and ``linborg
calibrate-risk`` fit them again.
"""

from __future__ import annotations

import json
from pathlib import Path

from linborg.bundle import SPEC, WEIGHTS, BundleError, bundle_path, load_bundle

#: Fitted on one network's outputs, so meaningless for a blend until refitted.
REFITTED = ("interval_calibration", "risk_calibration")
#: Hyperparameters that say how a network was trained, not what it is: a fine-tune at another
#: learning rate is still the same network.
TRAINING_ONLY = ("learning_rate",)


def network_hparams(hparams: dict | None) -> dict:
    """Return the hyperparameters that define the network, comparable across bundles.

    Optional parts a bundle written before them lacks (a head, an input) are absent there and
    off (``None``, ``False`` or 0) in later bundles: both count as off.
    """
    return {
        k: v
        for k, v in (hparams or {}).items()
        if k not in TRAINING_ONLY and v not in (None, 0)  # False == 0: off too
    }


def blend(first: str | Path, second: str | Path, weight: float, out: str | Path) -> Path:
    """Write the bundle whose weights are ``(1 - weight) * first + weight * second``."""
    import torch
    from safetensors.torch import save_model

    if not 0.0 <= weight <= 1.0:
        raise BundleError(f"blend: weight {weight} is not within 0-1")
    a, b = load_bundle(first), load_bundle(second)
    if network_hparams(a.spec.get("hparams")) != network_hparams(b.spec.get("hparams")):
        raise BundleError(f"blend: {first} and {second} are not the same network (hparams differ)")
    for key in ("reals_order", "metrics", "profile_codes", "center_steps", "format"):
        if a.spec.get(key) != b.spec.get(key):
            raise BundleError(f"blend: {first} and {second} differ in {key}")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    mixed = {
        k: ((1.0 - weight) * v + weight * sb[k]).to(v.dtype) if v.is_floating_point() else v
        for k, v in sa.items()
    }
    with torch.no_grad():
        a.model.load_state_dict(mixed, strict=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(a.model, str(out / WEIGHTS), metadata={"format": b.spec["format"]})
    spec = json.loads((bundle_path(second) / SPEC).read_text())
    for key in REFITTED:
        spec.pop(key, None)
    spec["evaluation"] = {}
    training = spec.setdefault("training", {})
    training.pop("interval_calibration", None)
    training["blend"] = {"first": str(first), "second": str(second), "weight": weight}
    (out / SPEC).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    for name in (WEIGHTS, SPEC):
        (out / name).chmod(0o644)
    return out
