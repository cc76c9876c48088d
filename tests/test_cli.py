"""The ``anxmon`` command's handling of bad input: one line naming what was wrong, no traceback.

Exit status 2 for input anxmon refuses (``AnxmonError``), 1 for a path the system refuses
(``OSError``: a file where a folder is needed, no permission, a full disk).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from monitor.cli import main, os_error_text
from tests.conftest import ROOT, data_path


def run(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def test_analyze_refuses_an_output_that_is_not_a_folder(capsys, tmp_path):
    s02 = str(data_path("stress-predict", "S02"))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert run(capsys, "analyze", s02, "--out", str(a_file)) == (
        2, f"anxmon: error: --out {a_file} is a file; give a folder (it is created when missing)\n")
    assert run(capsys, "analyze", s02, "--out", "")[0] == 2
    status, err = run(capsys, "analyze", s02, "--out", str(a_file / "sub"))
    assert status == 1 and f"cannot use '{a_file / 'sub'}'" in err
    assert a_file.read_text() == "x"


def test_a_wearer_id_outside_the_wire_contract_is_refused(capsys, tmp_path):
    status, err = run(capsys, "analyze", str(data_path("stress-predict", "S02")), "--out", str(tmp_path),
                      "--wearer", "a/b")
    assert status == 2 and "wearer id 'a/b' is not valid" in err
    assert not any(tmp_path.iterdir())


def test_report_out_must_be_a_file(capsys, tmp_path):
    status, err = run(capsys, "report", str(tmp_path), "--out", str(tmp_path))
    assert status == 2 and "is a folder; give the HTML file to write" in err


@pytest.mark.parametrize("argv, expected", [
    (["bench", "analyze", "--max-wearers", "5"], "--max-wearers: only for anxmon bench live"),
    (["bench", "core", "--aligned-ticks"], "--aligned-ticks: only for anxmon bench live"),
    (["demo", "--minutes", "3"], "--minutes goes with --recording"),
    (["demo", "--recording", "x", "--minutes", "-1"], "--minutes must be > 0, got -1.0"),
    (["demo", "--summary-json", "."], "--summary-json . is a folder"),
])
def test_options_that_would_be_ignored_or_meaningless_are_refused(capsys, argv, expected):
    status, err = run(capsys, *argv)
    assert status == 2 and expected in err


def test_hash_password_without_a_terminal_or_input_is_an_error():
    """``anxmon app --hash-password`` with nothing on standard input (as in CI): no EOFError."""
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "app", "--hash-password"], cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "got none" in done.stderr and "Traceback" not in done.stderr


def test_os_error_text_names_both_paths():
    assert os_error_text(FileExistsError(17, "File exists", "a", None, "b")) == "cannot use 'a' -> 'b': File exists"
    assert os_error_text(OSError(28, "No space left on device")) == "No space left on device"
