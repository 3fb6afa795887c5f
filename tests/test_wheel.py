"""jaxlab as a user gets it from `pip install .`: the wheel, in a fresh venv outside the checkout.

The venv reuses the packages of the environment running the suite (requirements.lock, installed by `make
test`) through a `.pth` line, so nothing is downloaded; the editable install of the checkout in that
environment stays inactive there (its `.pth` hook is not run), and the checkout is neither on the path nor the
working directory. pip resolves `jaxlab[demo]` with `--no-index`, so an extra that names a package the lock
lacks fails here.
"""

import os
from pathlib import Path
import shutil
import subprocess
import sys
import sysconfig

import pytest

from jaxlab.data import cli as data_cli
from jaxlab.training import config as config_lib

REPO = Path(__file__).resolve().parents[1]


def _run(args, cwd, timeout=600) -> str:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
  return result.stdout


def _copy_checkout(out: Path) -> Path:
  """The checkout's files as git sees them (committed or not, links kept), without stale build/ folders."""
  listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO)
  for name in filter(None, listed.split("\0")):
    if (REPO / name).is_symlink() or (REPO / name).is_file():
      (out / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(REPO / name, out / name, follow_symlinks=False)
  return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
  """A fresh venv holding the wheel built from this checkout, its dependencies from the suite's environment."""
  root = tmp_path_factory.mktemp("wheel")
  source = _copy_checkout(root / "src")
  _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", source, "-w", root / "dist"],
       cwd=root)
  wheel, = (root / "dist").glob("jaxlab-*.whl")
  _run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], cwd=root)
  python = root / "venv" / "bin" / "python"
  site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).strip()
  lock = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
  Path(site, "requirements_lock.pth").write_text("\n".join(sorted(lock)) + "\n")
  _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index",
        f"jaxlab[demo] @ {wheel.as_uri()}"], cwd=root)
  return root / "venv"


def test_wheel_holds_every_config_and_builder(venv):
  out = _run([venv / "bin" / "python", "-c", "import jaxlab; from jaxlab.training import config; "
              "from jaxlab.data import cli; print(jaxlab.__file__); print(*config.config_names()); "
              "print(*cli.builder_names())"], cwd=venv.parent).splitlines()
  assert out[0].startswith(str(venv)), f"jaxlab imported from {out[0]}, not from the wheel"
  assert out[1].split() == config_lib.config_names() and out[2].split() == data_cli.builder_names()


def test_wheel_runs_a_demo_with_a_builder_and_a_config(venv):
  """Something-Else's demo: synthetic release -> `jaxlab data build` (packaged builder) -> the packaged tiny
  configs (`something_else:tiny`, ...) -> training and evaluation."""
  work = venv.parent / "user"
  work.mkdir()
  _run([venv / "bin" / "jaxlab", "demo", "--only", "something_else", "--workdir", "demo"], cwd=work)
  report = (work / "demo" / "report.md").read_text()
  assert "| something_else | ok |" in report
