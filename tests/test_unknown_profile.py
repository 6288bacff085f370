"""The unknown profile: a network that tells a plain host from the generator's generic servers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from bundles import assert_reloads_alike, tiny_fleet_bundle

from linborg.bundle import PLAIN, SPEC, BundleError, attach_plain, load_bundle, save_bundle
from linborg.contract import METRIC_NAMES, METRICS_BY_NAME, PROFILE, SERVER, ContractError
from linborg.features import (
    ENCODER_STEPS,
    UNKNOWN_PROFILE,
    build_model_frame,
    fill_window,
    network_profiles,
    time_index,
)
from linborg.model import PLAIN_FINETUNE_LEARNING_RATE, PRESETS, profile_codes
from linborg.trainer.train import train

PLAIN_HOST = "vm-7"


def test_a_plain_host_is_unknown_and_every_other_keeps_its_profile():
    servers = ["bbvm001", "web-7", "ppgen001", "PPGEN002.example.com:9100", "ppweb001", "db-01"]
    profiles = ["generic", "generic", "generic", "generic", "web_api", "database"]
    assert network_profiles(servers, profiles) == [
        UNKNOWN_PROFILE,  # a real VM: generic by fallback
        UNKNOWN_PROFILE,
        "generic",  # the generator's convention for generic servers
        "generic",  # hostnames match case-insensitively, with a domain or port
        "web_api",
        "database",  # a profile given explicitly is kept whatever the hostname
    ]
    with pytest.raises(ValueError):
        network_profiles(["a", "b"], ["generic"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The tiny fleet, the same with a plain host added, and a tiny bundle trained on the first."""
    frame, plain_bundle = tiny_fleet_bundle(tmp_path_factory.mktemp("unknown") / "plain")
    frame = frame.assign(**{SERVER: frame[SERVER].astype(str), PROFILE: frame[PROFILE].astype(str)})
    vm = frame[frame[SERVER] == "ppdb001"].assign(**{SERVER: PLAIN_HOST, PROFILE: "generic"})
    return frame, pd.concat([frame, vm], ignore_index=True), plain_bundle


def test_the_model_frame_holds_what_the_network_sees(fleet):
    _, mixed, _ = fleet
    seen = build_model_frame(mixed, unknown_profile=True).groupby(SERVER)[PROFILE].first()
    want = {"ppdb001": "database", "ppweb001": "web_api", PLAIN_HOST: UNKNOWN_PROFILE}
    assert seen.to_dict() == want
    plain = build_model_frame(mixed).groupby(SERVER)[PROFILE].first()
    assert plain[PLAIN_HOST] == "generic"


def last_windows(frame, servers):
    window = np.stack(
        [
            frame[frame[SERVER] == s][list(METRIC_NAMES)].to_numpy(np.float32)[-ENCODER_STEPS:]
            for s in servers
        ]
    )
    return window, int(time_index(frame["timestamp"]).max())


def continued(frame, bundle, **options):
    """Continue ``bundle`` on ``frame`` for the tiny preset with the unknown profile."""
    return train(
        frame, "tiny", seed=5, progress=False, log=lambda m: None, init=bundle,
        unknown_profile=True, **options,
    )  # fmt: skip


def test_a_network_trained_with_it_reads_plain_hosts_as_unknown_and_keeps_it(fleet, tmp_path):
    _, mixed, plain_bundle = fleet
    model, summary = continued(mixed, plain_bundle)
    assert summary["unknown_profile"] is True
    assert summary["unknown_profile_servers"] == 1
    out = save_bundle(model, tmp_path / "unknown", summary)
    spec = json.loads((out / SPEC).read_text())
    assert spec["hparams"]["unknown_profile"] is True
    assert_reloads_alike(model, out, mixed)

    forecaster = load_bundle(out)
    assert forecaster.unknown_profile
    window, end = last_windows(mixed, [PLAIN_HOST])
    with pytest.raises(ValueError, match="servers' names"):
        forecaster.predict(window, ["generic"], end)
    got = forecaster.predict(window, ["generic"], end, servers=[PLAIN_HOST]).values
    # The same window under the generator's generic hostname reads the generic profile instead.
    as_generic = forecaster.predict(window, ["generic"], end, servers=["ppgen001"]).values
    assert np.abs(got - as_generic).max() > 1e-4
    # What the plain host got is the network's answer for the profile 'unknown' (its spare code).
    filled, present, _ = fill_window(window)
    x = forecaster.inputs(filled, present, [UNKNOWN_PROFILE], end)
    raw = np.sort(forecaster.raw(x), -1)
    forecaster.calibration = None
    uncalibrated = forecaster.predict(window, ["generic"], end, servers=[PLAIN_HOST]).values
    ok = np.isfinite(uncalibrated)
    lo = np.array([METRICS_BY_NAME[m].min for m in METRIC_NAMES])[None, :, None, None]
    hi = np.array([METRICS_BY_NAME[m].max for m in METRIC_NAMES])[None, :, None, None]
    np.testing.assert_allclose(uncalibrated[ok], np.clip(raw, lo, hi)[ok], rtol=1e-4, atol=1e-4)

    # A network without it ignores the names: the old bundle forecasts alike with or without.
    old = load_bundle(plain_bundle)
    assert not old.unknown_profile
    np.testing.assert_array_equal(
        old.predict(window, ["generic"], end).values,
        old.predict(window, ["generic"], end, servers=[PLAIN_HOST]).values,
    )

    # Continued from it without the flag, the network keeps reading plain hosts as unknown.
    _, again = train(mixed, "tiny", seed=6, progress=False, log=lambda m: None, init=out)
    assert again["unknown_profile"] is True
    assert again["unknown_profile_servers"] == 1


def test_freezing_the_known_profiles_trains_only_the_unknown_row(fleet):
    _, mixed, plain_bundle = fleet
    base = load_bundle(plain_bundle).model.state_dict()
    model, summary = continued(mixed, plain_bundle, freeze_known_profiles=True)
    assert summary["freeze_known_profiles"] is True
    after = model.state_dict()
    key = "input_embeddings.embeddings.profile.weight"
    unknown = profile_codes()["nan"]
    for name, value in base.items():
        if name != key:
            assert torch.equal(after[name], value), name
    rows = [r for r in range(value.shape[0]) if r != unknown]
    assert torch.equal(after[key][rows], base[key][rows])
    assert base[key][unknown].abs().max() == 0  # padding in the old bundle
    assert after[key][unknown].abs().max() > 0  # learnt here
    with pytest.raises(ContractError, match="--init and --unknown-profile"):
        train(mixed, "tiny", progress=False, log=lambda m: None, freeze_known_profiles=True)


def test_a_plain_host_network_forecasts_plain_hosts_and_only_them(fleet, tmp_path):
    import shutil

    frame, mixed, plain_bundle = fleet
    # Two different networks: the tiny bundle, and another trained on the mixed fleet.
    other, summary = train(mixed, "tiny", seed=9, progress=False, log=lambda m: None)
    other_dir = save_bundle(other, tmp_path / "other", summary)
    routed = tmp_path / "routed"
    shutil.copytree(plain_bundle, routed)
    target = attach_plain(routed, other_dir)
    assert target == routed / PLAIN
    assert {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()} == {
        "model.json": 0o644,
        "model.safetensors": 0o644,
    }

    servers = ["ppweb001", PLAIN_HOST, "ppdb001"]
    profiles = ["web_api", "generic", "database"]
    window, end = last_windows(mixed, servers)
    both = load_bundle(routed)
    assert both.plain is not None
    with pytest.raises(ValueError, match="servers' names"):
        both.predict(window, profiles, end)
    got = both.predict(window, profiles, end, servers=servers)
    main, plain = load_bundle(plain_bundle), load_bundle(other_dir)
    alone = main.predict(window[[0, 2]], ["web_api", "database"], end).values
    np.testing.assert_allclose(got.values[[0, 2]], alone, rtol=1e-5, atol=1e-5)
    by_plain = plain.predict(window[[1]], ["generic"], end).values
    np.testing.assert_allclose(got.values[[1]], by_plain, rtol=1e-5, atol=1e-5)
    # ... which is not what the main network says about it.
    by_main = main.predict(window[[1]], ["generic"], end).values
    assert np.nanmax(np.abs(got.values[1] - by_main[0])) > 1e-3
    assert got.present.dtype == bool and got.present.all()

    # No nesting: a bundle with its own plain-host network cannot become one.
    with pytest.raises(BundleError, match="its own plain/"):
        attach_plain(other_dir, routed)
    nested = tmp_path / "nested"
    shutil.copytree(routed, nested)
    shutil.rmtree(nested / PLAIN)
    shutil.copytree(routed, nested / PLAIN)  # whose plain/ has a plain/ again
    with pytest.raises(BundleError, match="its own plain/"):
        load_bundle(nested)


def test_fine_tuning_a_bundle_continues_the_network_that_forecasts_each_server(
    fleet, tmp_path, capsys
):
    import shutil

    from linborg.app.cli import main
    from linborg.bundle import WEIGHTS
    from linborg.parquet import write_metrics
    from linborg.trainer.train import split_by_network

    frame, mixed, plain_bundle = fleet
    parent = tmp_path / "parent"
    shutil.copytree(plain_bundle, parent)
    attach_plain(parent, plain_bundle)
    web = frame[frame[SERVER] == "ppweb001"].assign(**{SERVER: "vm-8", PROFILE: "generic"})
    vms = pd.concat([mixed[mixed[SERVER] == PLAIN_HOST], web], ignore_index=True)
    parts = split_by_network(mixed, parent)
    assert [(sub, sorted(p[SERVER].unique())) for sub, p in parts] == [
        (None, ["ppdb001", "ppweb001"]),
        (PLAIN, [PLAIN_HOST]),
    ]
    assert [sub for sub, _ in split_by_network(mixed, plain_bundle)] == [None]  # no plain/

    def fine_tune(data, name, *options):
        path = write_metrics(data, tmp_path / f"{name}.parquet")
        out = tmp_path / name
        options = options or ("--preset", "tiny")
        args = ["train", "--data", str(path), "--init", str(parent), *options]
        assert main([*args, "--seed", "5", "--quiet", "--out", str(out)]) == 0
        return out

    def same(a, b, names=(WEIGHTS, SPEC)):
        """Whether two networks are the same: weights and model.json (band, risk, records)."""
        return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)

    def learnt(a, b):
        return not same(a, b, (WEIGHTS,))

    # Plain hosts only: the plain-host network learns, the other is the parent's, unchanged.
    out = fine_tune(vms, "vms")
    assert same(out, parent) and learnt(out / PLAIN, parent / PLAIN)
    assert json.loads((out / PLAIN / SPEC).read_text())["training"]["init"] == str(parent / PLAIN)
    assert "kept the network for the profiles' servers" in capsys.readouterr().out
    assert load_bundle(out).plain is not None
    # The fine-tune preset continues a plain-host network at its own rate unless one is given.
    for options, rate in (((), PLAIN_FINETUNE_LEARNING_RATE), (("--learning-rate", "0.02"), 0.02)):
        out = fine_tune(vms, "rate", "--preset", "finetune", "--max-epochs", "1", *options)
        training = json.loads((out / PLAIN / SPEC).read_text())["training"]
        assert training["hyperparameters"]["learning_rate"] == rate
    assert PRESETS["finetune"]["learning_rate"] != PLAIN_FINETUNE_LEARNING_RATE
    capsys.readouterr()
    # The profiles' servers only: the other way round.
    out = fine_tune(frame, "generated")
    assert learnt(out, parent) and same(out / PLAIN, parent / PLAIN)
    assert "kept the plain-host network" in capsys.readouterr().out
    # Both: each network on its own servers, the budget shared by their numbers of servers.
    out = fine_tune(pd.concat([frame, vms], ignore_index=True), "both")
    assert learnt(out, parent) and learnt(out / PLAIN, parent / PLAIN)
    said = capsys.readouterr().err
    assert "2 of 4 servers continue the network for the profiles' servers (1.0 of 2 " in said
    assert "2 of 4 servers continue the plain-host network (1.0 of 2 minutes)" in said
    # A network with one server here is kept (training needs two), the other gets the budget.
    out = fine_tune(mixed, "one_vm")
    assert learnt(out, parent) and same(out / PLAIN, parent / PLAIN)
    said = capsys.readouterr()
    assert f"{PLAIN_HOST} is the only server here for the plain-host network" in said.err
    assert "servers continue the" not in said.err and "kept the plain-host network" in said.out
    # One server for each network: nothing to train, refused.
    one_each = write_metrics(mixed[mixed[SERVER] != "ppweb001"], tmp_path / "one_each.parquet")
    args = ["train", "--data", str(one_each), "--init", str(parent), "--preset", "tiny"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "none")]) == 2
    assert "no network has 2 servers here" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    # The parent is never overwritten, and a bundle without plain/ leaves none behind.
    path = tmp_path / "vms.parquet"
    args = ["train", "--data", str(path), "--init", str(parent), "--preset", "tiny", "--quiet"]
    assert main([*args, "--out", str(parent)]) == 2
    assert "is the bundle being fine-tuned" in capsys.readouterr().err
    assert main([*args[:4], str(plain_bundle), *args[5:], "--out", str(out)]) == 0
    assert not (out / PLAIN).exists() and "removed" in capsys.readouterr().out
