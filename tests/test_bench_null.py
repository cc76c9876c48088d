"""``bench/null_trigger_rate.py``, whose figures docs/scoring.md and docs/checkins.md quote: it
scores as the monitor does, and a bad threshold is one line. No figure is asserted here (the script prints them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from monitor.core.score import StressScorer

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "null_trigger_rate.py"


def load_script():
    spec = importlib.util.spec_from_file_location("null_trigger_rate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scorer_is_told_the_check_in_threshold_as_the_monitor_tells_it(monkeypatch):
    """WearerMonitor passes the policy's threshold to the scorer (a tick that counts toward a
    check-in is never learned, also below learn_below); at ``--threshold 1.5`` the null
    simulation must too, or it learns ticks the monitor would not."""
    null = load_script()
    told = []
    update = StressScorer.update

    def spy(self, row, elevated_at=None):
        told.append(elevated_at)
        return update(self, row, elevated_at)

    monkeypatch.setattr(StressScorer, "update", spy)
    monkeypatch.setattr(null, "HOURS", 0.1)
    null.run_device(["HR_Mean"], seed=0, threshold=1.5)
    assert len(told) == 72 and set(told) == {1.5}


@pytest.mark.parametrize("threshold", ["0", "-1", "1000", "nan"])
def test_a_threshold_the_policy_refuses_is_one_line_not_a_traceback(threshold, capsys):
    with pytest.raises(SystemExit) as stop:
        load_script().main(["--threshold", threshold])
    err = capsys.readouterr().err
    assert stop.value.code == 2  # argparse's usage error, not a ConfigError raised out of main
    assert "policy: 'threshold' must be" in err.splitlines()[-1]
