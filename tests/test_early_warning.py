"""Does the shipped model warn of the demo's connection leak before its metric reaches warning?

The demo's leak (``linborg.app.stack.Script``) starts 60 minutes into its precursor,
front_close_wait well below its warning level at the start and crossing it about 40 minutes
later. Every 10 minutes until the crossing, the shipped model
forecasts the fleet from the generator's deterministic samples, and the LinborgPredictedIncident
warning condition of the shipped rules is checked on its output (risk >= ``risk_warning`` and
the driving metric's pessimistic forecast past warning within 8 h). A forecast that follows the
ramp makes it hold before the crossing: that is the product's promise (issue 12).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from linborg.app.stack import Options, demo_script, scripted_crossing
from linborg.bundle import load_bundle
from linborg.contract import METRIC_NAMES, STEP_SECONDS
from linborg.features import ENCODER_STEPS
from linborg.generator.fleet import build_fleet
from linborg.generator.simulate import Simulator
from linborg.mixin import CONFIG
from linborg.risk import assess, healthy_risk
from linborg.thresholds import load_thresholds

NOW = dt.datetime(2026, 3, 4, 10, 2, 30, tzinfo=dt.UTC)


def warning_checks() -> list[tuple[dt.datetime, float, bool]]:
    """Return (check time, front_close_wait, warning condition holds) until the crossing."""
    opts = Options()
    _, origin, _, onset, script = demo_script(opts, NOW)
    server = opts.script.server
    crossing, _ = scripted_crossing(opts.composition, opts.seed, origin, script, server, onset)
    crosses = dt.datetime.fromisoformat(crossing["at"])
    fleet = build_fleet(opts.composition)
    sim = Simulator(fleet, opts.seed, origin)
    for at, request in script:
        sim.schedule(at, request)
    rows, times = [], []
    while sim.time_of(sim.k) < crosses:
        t, vals, _ = sim.step()
        rows.append(np.stack([vals[m] for m in METRIC_NAMES], 1))
        times.append(t)
    data = np.stack(rows, 1)  # (servers, steps, 14)
    model, thresholds = load_bundle("models/default"), load_thresholds()
    profiles = [s.profile for s in fleet]
    healthy = healthy_risk(model.spec.get("risk_calibration"), profiles, list(METRIC_NAMES))
    i = [s.name for s in fleet].index(server)
    j = METRIC_NAMES.index(crossing["metric"])
    out = []
    first = next(k for k, t in enumerate(times) if t >= NOW)  # the first step served live
    for k, t in enumerate(times):
        if k < first or (k - first) % 2:  # every 10 minutes from the start
            continue
        end = int(t.timestamp()) // STEP_SECONDS
        fc = model.predict(data[:, k - ENCODER_STEPS + 1 : k + 1], profiles, end)
        r = assess(
            fc.values, profiles, list(METRIC_NAMES), thresholds, present=fc.present, healthy=healthy
        )
        ttb = r.time_to_breach[i, r.driver[i]]  # (level, quantile): warning, pessimistic
        holds = r.score[i] >= CONFIG["risk_warning"] and np.isfinite(ttb[0, 1])
        out.append((t, float(data[i, k, j]), bool(holds)))
    return out


def test_the_shipped_model_warns_of_the_demo_leak_before_its_metric_reaches_warning():
    checks = warning_checks()
    assert checks, "no check before the crossing"
    assert all(value < 150 for _, value, _ in checks)  # every check is before the crossing
    assert any(holds for _, _, holds in checks), [(t.strftime("%H:%M"), v) for t, v, _ in checks]
