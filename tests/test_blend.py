"""`linborg blend`: two bundles of one network, their weights interpolated into a new bundle."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pytest
import torch

from linborg.app.cli import main
from linborg.bundle import SPEC, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES, ContractError
from linborg.features import ENCODER_STEPS, time_index
from linborg.generator.fleet import build_fleet
from linborg.generator.output import simulate
from linborg.trainer.blend import blend, network_hparams
from linborg.trainer.train import train

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny bundle and its continuation (as `linborg train --init` makes one)."""
    frame, _, _ = simulate(build_fleet({"web_api": 1, "database": 1}), 4, START, 3 * 288)
    root = tmp_path_factory.mktemp("blend")
    model, summary = train(frame, "tiny", seed=3, progress=False, log=lambda m: None)
    summary["source"] = "synthetic test fleet"
    first = save_bundle(model, root / "first", summary)
    model, summary = train(frame, "tiny", seed=5, progress=False, log=lambda m: None, init=first)
    second = save_bundle(model, root / "second", summary)
    spec = json.loads((second / SPEC).read_text())
    spec["risk_calibration"] = {"healthy_risk": {"web_api": {"cpu_user_pct": 12.0}}}
    (second / SPEC).write_text(json.dumps(spec))
    return frame, first, second


def params(directory) -> dict[str, torch.Tensor]:
    return dict(load_bundle(directory).model.state_dict())


def test_the_blend_interpolates_every_weight_between_the_two_bundles(pair, tmp_path):
    _, first, second = pair
    a, b = params(first), params(second)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the continuation did move
    for weight in (0.0, 0.25, 1.0):
        got = params(blend(first, second, weight, tmp_path / f"w{weight}"))
        for k, v in got.items():
            if v.is_floating_point():
                torch.testing.assert_close(v, (1 - weight) * a[k] + weight * b[k])
            else:
                assert torch.equal(v, a[k])


def test_the_blend_forecasts_and_records_both_parents_but_no_stale_calibration(pair, tmp_path):
    frame, first, second = pair
    out = blend(first, second, 0.5, tmp_path / "mid")
    spec = json.loads((out / SPEC).read_text())
    assert spec["training"]["blend"] == {"first": str(first), "second": str(second), "weight": 0.5}
    assert spec["training"]["init"] == str(first)  # the second bundle's lineage is kept
    # fitted on one parent's outputs, so refitted by calibrate / calibrate-risk, not copied
    assert "risk_calibration" not in spec and "interval_calibration" not in spec
    assert "interval_calibration" not in spec["training"]
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o644
    # A working network: it forecasts every present metric, and not as either parent does.
    servers = ("ppweb001", "ppdb001")
    window = np.stack(
        [
            frame[frame["server"] == s][list(METRIC_NAMES)].to_numpy()[-ENCODER_STEPS:]
            for s in servers
        ]
    )
    end = int(time_index(frame["timestamp"]).max())
    profiles = ["web_api", "database"]
    got = {
        name: load_bundle(path).predict(window, profiles, end).values[..., 1]
        for name, path in (("first", first), ("second", second), ("mid", out))
    }
    assert np.isfinite(got["mid"]).all()
    assert not np.allclose(got["mid"], got["first"]) and not np.allclose(got["mid"], got["second"])


def test_a_weight_outside_0_1_or_two_different_networks_are_refused(pair, tmp_path):
    frame, first, second = pair
    with pytest.raises(ContractError, match="not within 0-1"):
        blend(first, second, 1.5, tmp_path / "bad")
    other = tmp_path / "other"
    other.mkdir()
    for name in ("model.json", "model.safetensors"):
        (other / name).write_bytes((second / name).read_bytes())
    spec = json.loads((other / SPEC).read_text())
    spec["hparams"]["dropout"] = 0.3  # another network's settings, the same shapes
    (other / SPEC).write_text(json.dumps(spec))
    with pytest.raises(ContractError, match="not the same network"):
        blend(first, other, 0.5, tmp_path / "bad2")


def test_a_continuation_at_another_rate_or_older_hparams_still_blends(pair, tmp_path):
    """A fine-tune at another learning rate, or a parent written before an optional part's
    hyperparameter existed, is the same network."""
    _, first, second = pair
    other = tmp_path / "other"
    other.mkdir()
    for name in ("model.json", "model.safetensors"):
        (other / name).write_bytes((second / name).read_bytes())
    spec = json.loads((other / SPEC).read_text())
    spec["hparams"]["learning_rate"] = spec["hparams"]["learning_rate"] * 10
    spec["hparams"]["nofix_head"] = 0.0  # the parent has no such key: off on both sides
    spec["hparams"]["naive_mix"] = False
    (other / SPEC).write_text(json.dumps(spec))
    first_spec = json.loads((first / SPEC).read_text())
    assert "nofix_head" not in first_spec["hparams"] or not first_spec["hparams"]["nofix_head"]
    out = blend(first, other, 0.5, tmp_path / "mid")
    assert (out / "model.safetensors").exists()
    # switched on, it is another network
    on = dict(spec["hparams"], nofix_head=2.0)
    assert network_hparams(on) != network_hparams(first_spec["hparams"])
    assert network_hparams(spec["hparams"]) == network_hparams(first_spec["hparams"])


def test_the_blend_command_writes_the_bundle(pair, tmp_path, capsys):
    _, first, second = pair
    out = tmp_path / "cli"

    def blend_command(weight: str) -> int:
        return main(
            ["blend", "--model", str(first), "--other", str(second), "--weight", weight]
            + ["--out", str(out)]
        )

    assert blend_command("0.3") == 0
    assert json.loads((out / SPEC).read_text())["training"]["blend"]["weight"] == 0.3
    assert "linborg calibrate --model" in capsys.readouterr().out
    assert blend_command("-1") == 2
    assert "not within 0-1" in capsys.readouterr().err
    # A parent's plain-host network is not blended, and the command says so.
    with_plain = tmp_path / "with_plain"
    shutil.copytree(first, with_plain)
    shutil.copytree(second, with_plain / "plain")
    out = tmp_path / "cli2"
    args = ["blend", "--model", str(with_plain), "--other", str(second), "--out", str(out)]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert f"{with_plain} has a plain-host network, which the blend does not have" in said
    assert not (out / "plain").exists()
