"""The sandbox contains what interpretation code may do: loops, forks, allocations, sockets, writes."""

import socket
import threading
from pathlib import Path

from jaxlab.find import sandbox

PROJECT = Path(__file__).resolve().parents[2]
QUICK = sandbox.Limits(wall_seconds=10, cpu_seconds=2)


def run(code, calls=((1.0,),), kind="number", limits=QUICK):
  return sandbox.run(code, [list(c) for c in calls], kind=kind, limits=limits)


def test_ordinary_code_runs():
  result = run("import numpy as np\nimport math\ndef f(x):\n  return np.sin(x) + math.pi", [(0.0,), (2.0,)])
  assert result.status == "ok" and result.function == "f"
  assert [r["value"] for r in result.results] == [3.141592653589793, 3.141592653589793 + 0.9092974268256817]
  assert "audit hook" in result.isolation and "resource limits" in result.isolation


def test_infinite_loop_times_out():
  assert run("def f(x):\n  while True:\n    pass").status == "timeout"
  wall = sandbox.Limits(wall_seconds=1, cpu_seconds=30)
  assert run("import time\ndef f(x):\n  time.sleep(60)", limits=wall).status == "timeout"


def test_fork_bomb_is_contained():
  result = run("import os\ndef f(x):\n  while True:\n    os.fork()")
  assert result.status == "ok" and "fork" in result.results[0]["error"]
  result = run("import threading\ndef f(x):\n  while True:\n    threading.Thread(target=lambda: None).start()")
  assert "error" in result.results[0]


def test_large_allocation_fails_inside():
  result = run("def f(x):\n  block = bytearray(64 * 2**30)\n  return 1.0")
  assert result.results[0]["error"].startswith("MemoryError")


def test_no_network():
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(1)
  listener.settimeout(3)
  port = listener.getsockname()[1]
  connected = []
  threading.Thread(target=lambda: _accept(listener, connected), daemon=True).start()
  result = run(f"import socket\ndef f(x):\n  socket.create_connection(('127.0.0.1', {port}), timeout=2)\n  return 1.0")
  assert "not allowed" in result.results[0]["error"]
  result = run(f"import _socket\ndef f(x):\n  s = _socket.socket()\n  s.connect(('127.0.0.1', {port}))\n  return 1.0")
  assert "not allowed" in result.results[0]["error"]
  listener.close()
  assert not connected


def _accept(listener, connected):
  try:
    connected.append(listener.accept())
  except OSError:
    pass


def test_no_writes_outside_the_working_directory(tmp_path):
  target = PROJECT / "sandbox_write_probe.txt"
  existing = PROJECT / "README.md"
  before = existing.read_bytes()
  result = run(f"def f(x):\n  open({str(target)!r}, 'w').write('x')\n  return 1.0")
  assert "not allowed" in result.results[0]["error"] and not target.exists()
  result = run(f"import os\ndef f(x):\n  os.remove({str(existing)!r})\n  return 1.0")
  assert "not allowed" in result.results[0]["error"]
  result = run(f"def f(x):\n  open({str(existing)!r}, 'w')\n  return 1.0")
  assert "not allowed" in result.results[0]["error"]
  assert existing.read_bytes() == before
  result = run("def f(x):\n  open('scratch.txt', 'w').write('kept')\n  return open('scratch.txt').read()", kind="str")
  assert result.results[0] == {"value": "kept"}


def test_reading_the_project_is_refused():
  result = run(f"def f(x):\n  return open({str(PROJECT / 'README.md')!r}).read()", kind="str")
  assert "not allowed" in result.results[0]["error"]


def test_results_and_errors_are_reported_per_call():
  result = run("def helper(x):\n  return x\n\ndef f(x):\n  if x == -1:\n    raise ValueError('negative')\n  return x**0.5",
               [(4.0,), (-4.0,), (-1.0,)])
  assert result.function == "f"
  assert result.results[0] == {"value": 2.0}
  assert result.results[1]["complex"][1] == 2.0
  assert result.results[2]["error"] == "ValueError: negative"
  assert run("def f(x) return").status == "error"
  assert run("x = 1").status == "error"
  assert "not str" in run("def f(s):\n  return 3", [("a",)], kind="str").results[0]["error"]
