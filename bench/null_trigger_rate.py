"""False-trigger rate of the score with no stress at all, per device: ``python bench/null_trigger_rate.py``.

A cleaned copy of the null simulation of the science review (audit 15, ``sim_null.py``), quoted in
docs/scoring.md ("The score's spread differs by device"). Stationary, stress-free indicators (each
an AR(1) process with a 5 min time constant and a true SD above the score's floor, 8 h per wearer,
seeds 0-9) go through the real ``StressScorer`` with the default ``[score]`` configuration and the
real ``CheckinPolicy`` with no cooldown, no daily cap and no quiet hours, so every trigger
decision counts. No movement is simulated, so the motion gate never closes. One row has RMSSD
fall as heart rate rises (correlation 0.7), as real hearts do. The last two rows are references
computed in the same run: the score with the baseline known exactly (the simulation's own mean
and SD), what any learned baseline could at best reach.

Deterministic (fixed seeds); about 5 s. Re-run it after any change to the baseline or the score.
``--threshold X`` runs the policy at another check-in threshold (default: ``[policy]``'s 2.0), e.g.
3.0, where ten "fine" answers take a wearer (docs/checkins.md, "Learning from answers").
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from firmware_bridge.sim_physiology import ou_noise
from monitor.core.base import Features
from monitor.core.policy import CheckinPolicy, Decision, PolicyConfig
from monitor.core.score import INDICATORS, ScoreConfig, StressScorer
from monitor.errors import ConfigError

TICK_S = 5.0
HOURS = 8.0
SEEDS = range(10)
TAU_TICKS = 60  # 5 min
MEAN = {"HR_Mean": 70.0, "HRV_RMSSD": 40.0, "EDA_Tonic_Mean": 2.0, "SCR_Rate": 2.0,
        "TEMP_Mean": 33.0, "RSP_Rate": 15.0, "ACC_Restlessness": 0.2}
TRUE_SD = {"HR_Mean": 4.0, "HRV_RMSSD": 10.0, "EDA_Tonic_Mean": 0.3, "SCR_Rate": 1.5,
           "TEMP_Mean": 0.3, "RSP_Rate": 2.0, "ACC_Restlessness": 0.12}
DEVICES = {  # name -> (indicators, correlation of RMSSD with heart rate in the stress direction)
    "HR only": (["HR_Mean"], 0.0),
    "HR + RMSSD": (["HR_Mean", "HRV_RMSSD"], 0.0),
    "HR + RMSSD, correlated 0.7 (RMSSD falls as HR rises)": (["HR_Mean", "HRV_RMSSD"], 0.7),
    "EDA band (tonic + SCR)": (["EDA_Tonic_Mean", "SCR_Rate"], 0.0),
    "full wristband (7)": (list(INDICATORS), 0.0),
}


def run_device(keys: list[str], seed: int, known_baseline: bool = False, rho: float = 0.0,
               threshold: float = PolicyConfig.threshold) -> tuple[float, list[float]]:
    """Trigger decisions per hour and the scored values of one simulated wearer (with
    ``known_baseline``, scored against the simulation's true mean and SD instead; ``rho``:
    RMSSD's correlation with heart rate, in the stress direction; ``threshold``: the policy's
    check-in threshold, score units)."""
    n = int(HOURS * 3600 / TICK_S)
    rng = np.random.default_rng(seed)
    noise = {k: ou_noise(rng, n, TAU_TICKS) for k in keys}
    if rho and "HR_Mean" in noise and "HRV_RMSSD" in noise:  # still unit variance, still AR(1)
        noise["HRV_RMSSD"] = -(rho * noise["HR_Mean"] + np.sqrt(1.0 - rho * rho) * noise["HRV_RMSSD"])
    scorer = StressScorer(ScoreConfig(), tick_s=TICK_S)
    cap = scorer.config.z_cap
    policy = CheckinPolicy(PolicyConfig(threshold=threshold, quiet_hours=None, cooldown_s=0.0, daily_cap=10**6),
                           wearer_id="null")
    t0 = 1.7e9
    triggers = 0
    scores = []
    for i in range(n):
        t = t0 + i * TICK_S
        if known_baseline:  # the same clipped, weighted mean of deviations, against the truth
            value = sum(scorer.config.weights[k] * min(max(INDICATORS[k][1] * noise[k][i], 0.0), cap)
                        for k in keys) / sum(scorer.config.weights[k] for k in keys)
        else:
            row = Features(t, {k: MEAN[k] + TRUE_SD[k] * noise[k][i] for k in keys}, {})
            value = scorer.update(row, elevated_at=policy.effective_threshold()).value  # as WearerMonitor
        if value is not None:
            scores.append(value)
        triggers += sum(isinstance(ev, Decision) for ev in policy.update(t, value, {}))
    return triggers / HOURS, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=PolicyConfig.threshold,
                        help="check-in threshold of the policy (score units; default %(default)s)")
    threshold = parser.parse_args(argv).threshold
    try:
        PolicyConfig(threshold=threshold)  # the policy's own check, before 8 h x 10 seeds
    except ConfigError as err:
        parser.error(str(err))
    print(f"null: stationary indicators, AR(1) tau 5 min, {HOURS:g} h x {len(SEEDS)} seeds, "
          f"default [score], policy at threshold {threshold:g} without cooldown/cap/quiet hours")
    print("| device | trigger decisions / h with no stress (mean, range over seeds) "
          "| SD of score | P(score >= 2) |")
    print("|---|---|---|---|")
    rows = [(name, keys, rho, False) for name, (keys, rho) in DEVICES.items()]
    rows.append(("HR only, baseline known exactly (reference)", ["HR_Mean"], 0.0, True))
    rows.append(("HR + RMSSD, correlated 0.7, baseline known exactly (reference)", ["HR_Mean", "HRV_RMSSD"], 0.7, True))
    for name, keys, rho, known in rows:
        rates, pooled = [], []
        for seed in SEEDS:
            rate, scores = run_device(keys, seed, known_baseline=known, rho=rho, threshold=threshold)
            rates.append(rate)
            pooled.extend(scores)
        s = np.asarray(pooled)
        print(f"| {name} | {np.mean(rates):.2f} ({min(rates):.2f}-{max(rates):.2f}) "
              f"| {s.std():.2f} | {np.mean(s >= 2.0):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
