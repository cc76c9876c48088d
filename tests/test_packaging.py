"""A wheel of anxmon (what ``pip install /path/to/checkout`` or ``pip install git+...`` installs)
holds what the commands need outside the checkout: every module, the app's static files and
anxmon's own configs (the top-level ``configs/``, carried as ``monitor/configs``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "monitor", "firmware_bridge", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the checkout (an in-tree build leaves build/ behind)."""
    try:
        setuptools_major = int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        setuptools_major = 0
    if setuptools_major < 77:
        pytest.skip("building the wheel offline needs setuptools>=77 in this environment (the dev extra)")
    src, out = tmp_path_factory.mktemp("checkout"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(src)], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return next(out.glob("anxmon-*.whl"))


def test_the_wheel_holds_every_module_static_file_and_config(wheel):
    """The wheel had the modules and the app's page but no configs/devices nor configs/scenarios:
    ``anxmon bridge``, ``simulate`` and ``demo`` failed after a non-editable install."""
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(ROOT).as_posix() for package in ("monitor", "firmware_bridge")
              for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    wanted |= {"monitor/" + p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.toml")}
    assert {"monitor/configs/devices/polar-h10.toml", "monitor/configs/scenarios/demo.toml"} <= wanted
    assert sorted(wanted - names) == []
    assert not [n for n in names if n.startswith("configs/")]  # no top-level folder in site-packages


def test_an_installed_wheel_finds_its_configs_outside_the_checkout(wheel, tmp_path):
    """Installed (a pure wheel is unpacked into site-packages) and run from another folder,
    anxmon reads its device definitions and scenarios from the installed copy."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import json, monitor; from firmware_bridge.devices import DEVICES_DIR, load_device;"
            "from firmware_bridge.sim_scenario import SCENARIOS_DIR, load_scenario;"
            "print(json.dumps([monitor.__file__, str(DEVICES_DIR), str(SCENARIOS_DIR),"
            "load_device('polar-h10').model, load_scenario('demo').name]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXMON_")} | {"PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    package, devices, scenarios, model, scenario = json.loads(run.stdout)
    assert Path(package).parent == site / "monitor"
    assert (Path(devices), Path(scenarios)) == (site / "monitor/configs/devices", site / "monitor/configs/scenarios")
    assert (model, scenario) == ("polar-h10", "demo")
