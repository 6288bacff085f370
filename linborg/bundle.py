"""The model bundle: ``model.safetensors`` (weights) plus ``model.json`` (everything else).

Nothing is pickled. Loading rebuilds the network from the JSON hyperparameters, checks the
bundle against the running contract (names, profiles, shapes) and loads the weights strictly.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import torch
from pytorch_forecasting import TemporalFusionTransformer
from torch import nn

from linborg.contract import (
    CONTRACT_VERSION,
    METRIC_NAMES,
    PROFILE_NAMES,
    STEP_SECONDS,
    ContractError,
    check_contract_version,
)
from linborg.features import (
    ENCODER_STEPS,
    HORIZON_STEPS,
    MODEL_TIME_FEATURES,
    SEASONAL_COLUMNS,
    SENTINEL,
)
from linborg.model import (
    MIN_SCALE,
    QUANTILES,
    RELATIVE_FLOOR,
    Forecaster,
    SeasonalTFT,
    center_steps_of,
    make_loss,
    make_normalizer,
    profile_codes,
    reals_order,
)

FORMAT = "linborg-tft-bundle/1"
WEIGHTS = "model.safetensors"
SPEC = "model.json"
#: A bundle's optional plain-host network: a whole bundle in this subdirectory that forecasts
#: the servers ``linborg.features.network_profiles`` calls ``unknown`` (profile generic, a
#: hostname of no profile's convention: a plain VM), while the bundle's own network forecasts
#: every other server (``Forecaster.plain``).
PLAIN = "plain"
#: Hyperparameters that are objects; they are rebuilt from code, not stored.
OBJECT_HPARAMS = ("loss", "logging_metrics", "output_transformer", "dataset_parameters")


class BundleError(ContractError):
    """Raise when a model bundle is missing, corrupt or does not match the running contract."""


def code_revision() -> str:
    """Return the git revision of this checkout, or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _plain_hparams(model: TemporalFusionTransformer) -> dict:
    hp = {}
    for key, value in model.hparams.items():
        if key in OBJECT_HPARAMS:
            continue
        if key == "embedding_sizes":
            value = {n: [int(a), int(b)] for n, (a, b) in value.items()}
        elif key == "embedding_labels":
            value = {
                n: [[str(k), int(v)] for k, v in labels.items()] for n, labels in value.items()
            }
        json.dumps(value)  # every kept value must be plain data
        hp[key] = value
    return hp


def contract_fields() -> dict:
    """Return what a bundle must agree on with the running code."""
    return {
        "contract_version": CONTRACT_VERSION,
        "metrics": list(METRIC_NAMES),
        "profiles": list(PROFILE_NAMES),
        "quantiles": list(QUANTILES),
        "encoder_steps": ENCODER_STEPS,
        "horizon_steps": HORIZON_STEPS,
        "step_seconds": STEP_SECONDS,
        "time_features": list(MODEL_TIME_FEATURES),
        "reals_order": reals_order(),
        "sentinel": SENTINEL,
        "min_scale": dict(MIN_SCALE),
        "relative_floor": RELATIVE_FLOOR,
        "profile_codes": profile_codes(),
    }


#: What bundles written before the seasonal input and the relative scale floor hold; they
#: still load, and are served with the floors they were trained with.
LEGACY_FIELDS = {
    "reals_order": [x for x in reals_order() if x not in SEASONAL_COLUMNS],
    "min_scale": None,  # any per-metric floors: the Forecaster uses the bundle's own
    "relative_floor": None,
}


def save_bundle(
    model: TemporalFusionTransformer,
    directory: str | Path,
    training: dict,
    evaluation: dict | None = None,
) -> Path:
    """Write the bundle into ``directory`` and return it."""
    from pytorch_forecasting import __version__ as pf_version
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # The trainer's interval calibration is served from the top level (linborg/calibration.py);
    # the training summary keeps how it was fitted.
    training = dict(training)
    interval = training.pop("interval_calibration", None)
    if interval:
        training["interval_calibration"] = {k: interval[k] for k in ("windows", "fitted")}
    save_model(model, str(directory / WEIGHTS), metadata={"format": FORMAT})
    spec = {
        "format": FORMAT,
        **contract_fields(),
        "model_class": type(model).__name__,
        "hparams": _plain_hparams(model),
        "center_steps": center_steps_of(model),
        "training": training,
        "evaluation": evaluation or {},
        **({"interval_calibration": interval} if interval else {}),
        "code_revision": code_revision(),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {"torch": torch.__version__.split("+")[0], "pytorch_forecasting": pf_version},
    }
    (directory / SPEC).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    # Readable by the exporter's user too (safetensors writes its file owner-only).
    for name in (WEIGHTS, SPEC):
        (directory / name).chmod(0o644)
    return directory


def read_spec(directory: str | Path) -> dict:
    """Return the bundle's JSON after checking it matches the running contract."""
    directory = Path(directory)
    path = directory / SPEC
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory}: no such directory")
    if not path.is_file():
        raise BundleError(f"model bundle {directory}: {SPEC} is missing")
    if not (directory / WEIGHTS).is_file():
        raise BundleError(f"model bundle {directory}: {WEIGHTS} is missing")
    try:
        spec = json.loads(path.read_text())
    except OSError as err:
        raise BundleError(f"model bundle {directory}: {SPEC} cannot be read ({err})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise BundleError(f"model bundle {directory}: {SPEC} is not valid JSON ({err})") from None
    found = spec.get("format") if isinstance(spec, dict) else None
    if found != FORMAT:
        raise BundleError(f"model bundle {directory}: unknown format {found!r}; expected {FORMAT}")
    try:
        check_contract_version(spec.get("contract_version"), f"model bundle {directory}")
    except ContractError as err:
        raise BundleError(str(err)) from None
    differences = []
    for key, want in contract_fields().items():
        if key == "contract_version":
            continue
        have = spec.get(key)
        if key in LEGACY_FIELDS and have != want:
            legacy = LEGACY_FIELDS[key]
            if key == "min_scale" and isinstance(have, dict) and set(have) == set(METRIC_NAMES):
                continue
            if key == "relative_floor" and (have is None or isinstance(have, int | float)):
                continue
            if legacy is not None and have == legacy:
                continue
        if have != want:
            if isinstance(want, list) and isinstance(have, list):
                missing = [x for x in want if x not in have]
                extra = [x for x in have if x not in want]
                detail = (
                    f"missing {missing}, unexpected {extra}"
                    if missing or extra
                    else "different order"
                )
            else:
                detail = f"bundle has {have!r}, this code expects {want!r}"
            differences.append(f"{key}: {detail}")
    if differences:
        raise BundleError(
            f"model bundle {directory} does not match this contract:\n  " + "\n  ".join(differences)
        )
    return spec


#: Bounds on a bundle's hyperparameters, checked before anything is allocated: a bundle that
#: declares a network far outside them is refused, not built (hidden_size 1,000,000 once took
#: the exporter from 0.5 to 6 GB). The shipped model has hidden size 24 and about 0.1 M
#: parameters; these leave room for a network 40x wider.
HPARAM_BOUNDS = {
    "hidden_size": (1, 1024),
    "attention_head_size": (1, 64),
    "hidden_continuous_size": (1, 1024),
    "lstm_layers": (1, 8),
}
#: Most parameters a bundle's weights file may hold (counted from its header, before loading).
MAX_PARAMETERS = 50_000_000


def check_hparams(directory, hp: dict) -> None:
    """Refuse implausible hyperparameters before the network is built, naming each problem."""
    problems = []
    for key, (lo, hi) in HPARAM_BOUNDS.items():
        value = hp.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            problems.append(f"{key} {value!r} (expected an integer in {lo}..{hi})")
    dropout = hp.get("dropout", 0.0)
    if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        problems.append(f"dropout {dropout!r} (expected 0 <= dropout < 1)")
    sizes = hp.get("embedding_sizes")
    if not isinstance(sizes, dict) or "profile" not in sizes:
        problems.append("embedding_sizes has no 'profile' embedding")
    else:
        for name, pair in sizes.items():
            ok = isinstance(pair, list | tuple) and len(pair) == 2
            if not ok or not all(isinstance(x, int) and 1 <= x <= 1024 for x in pair):
                problems.append(f"embedding_sizes[{name!r}] {pair!r}")
    if not isinstance(hp.get("embedding_labels"), dict):
        problems.append("embedding_labels is missing")
    if problems:
        raise BundleError(f"model bundle {directory}: bad hyperparameters: " + "; ".join(problems))


def weights_parameter_count(path: Path) -> int:
    """Return how many numbers a safetensors file holds, from its header alone.

    Raise ValueError when the header is not a safetensors header.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("not a safetensors file (too short)")
        size = int.from_bytes(head, "little")
        if size > 100_000_000:
            raise ValueError(f"a safetensors header of {size} bytes is implausible")
        try:
            header = json.loads(f.read(size))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("the safetensors header is not valid JSON") from None
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(x, int) and x >= 0 for x in shape):
            raise ValueError(f"tensor {name!r} has no valid shape")
        count = 1
        for x in shape:
            count *= x
        total += count
    return total


#: The exporter's and trainer's default bundle, relative to the working folder.
DEFAULT_BUNDLE = "models/default"


def bundle_path(directory: str | Path) -> Path:
    """Return where ``directory`` is; the default ``models/default`` outside a checkout is the
    model shipped in the package (linborg/models/default), so an installed wheel serves it.
    """
    path = Path(directory)
    if str(directory) == DEFAULT_BUNDLE and not path.exists():
        from importlib import resources

        return Path(str(resources.files("linborg.models"))) / "default"
    return path


def load_bundle(directory: str | Path, chunk: int = 50) -> Forecaster:
    """Load a bundle into a Forecaster; refuse a mismatched or corrupt one with the reason.

    Every failure is a BundleError naming the problem: unreadable files, implausible
    hyperparameters or too many parameters (refused before anything is built), weights that
    do not fit, and anything else the network's construction raises.
    """
    try:
        return _load_bundle(bundle_path(directory), chunk)
    except BundleError:
        raise
    except Exception as err:  # noqa: BLE001 - a bundle must never crash a caller
        raise BundleError(
            f"model bundle {directory}: cannot be loaded ({type(err).__name__}: {err})"
        ) from None


def _load_bundle(directory: Path, chunk: int, nested: bool = False) -> Forecaster:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    spec = read_spec(directory)
    hp = dict(spec.get("hparams") or {})
    check_hparams(directory, hp)
    try:
        count = weights_parameter_count(directory / WEIGHTS)
    except OSError as err:
        raise BundleError(f"model bundle {directory}: {WEIGHTS} cannot be read ({err})") from None
    except ValueError as err:
        raise BundleError(f"model bundle {directory}: weights do not load ({err})") from None
    if count > MAX_PARAMETERS:
        raise BundleError(
            f"model bundle {directory}: {count:,} parameters, more than the limit of "
            f"{MAX_PARAMETERS:,}"
        )
    try:
        hp["embedding_sizes"] = {n: tuple(s) for n, s in hp["embedding_sizes"].items()}
        hp["embedding_labels"] = {n: dict(pairs) for n, pairs in hp["embedding_labels"].items()}
        model = SeasonalTFT(
            **hp,
            loss=make_loss(),
            logging_metrics=nn.ModuleList([]),
            output_transformer=make_normalizer(int(spec.get("center_steps", ENCODER_STEPS))),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise BundleError(f"model bundle {directory}: bad hyperparameters ({err})") from None
    try:
        load_model(model, str(directory / WEIGHTS), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"model bundle {directory}: weights do not load ({first})") from None
    forecaster = Forecaster(model, spec, chunk=chunk)
    if (directory / PLAIN).is_dir():
        if nested:
            raise BundleError(f"model bundle {directory}: a plain-host network has its own plain/")
        forecaster.plain = _load_bundle(directory / PLAIN, chunk, nested=True)
    return forecaster


def attach_plain(model: str | Path, plain: str | Path) -> Path:
    """Copy bundle ``plain`` into ``model``'s PLAIN subdirectory; return that directory.

    Both must load. ``plain`` must not have a plain-host network of its own; one that
    ``model`` already has is replaced.
    """
    import shutil

    model, plain = Path(model), Path(plain)
    load_bundle(model)
    if (plain / PLAIN).is_dir():
        raise BundleError(f"model bundle {plain}: a plain-host network has its own plain/")
    load_bundle(plain)
    target = model / PLAIN
    target.mkdir(exist_ok=True)
    for name in (WEIGHTS, SPEC):
        shutil.copyfile(plain / name, target / name)
        (target / name).chmod(0o644)
    load_bundle(model)
    return target
