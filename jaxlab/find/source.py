"""The `function_code.py` scripts of the benchmark, and running them in-process.

Every released function is a script: `python function_code.py a b c` prints
`Function input - output pairs: (a, f(a)) (b, f(b)) (c, f(c)) `. We generate that script's text and also
execute the same text in-process (for the interpreter protocol and as the scorers' ground truth), so the
exported file and what we measure cannot disagree.
"""

import contextlib
import random
import threading
import types
import zlib

import numpy as np

PAIRS_PREFIX = "Function input - output pairs: "

_MAIN = '''

def _pairs(args):
  pairs = ''
  for arg in args:
    try:
      out = {output}
    except Exception:
      out = 'None'
    pairs += f'({{arg}}, {{out}}) '
  return {prefix!r} + pairs


if __name__ == '__main__':
  print(_pairs(sys.argv[1:]))
'''


def script(body: str, *, output: str, imports: tuple[str, ...] = ()) -> str:
  """A complete `function_code.py`: `imports`, then `body` (which defines `function`), then the CLI.

  `output` is the Python expression, in terms of `arg` (one command-line string), that gives the text
  printed for that input, e.g. `function(float(arg))`. An input whose evaluation raises prints `None`.
  """
  header = "\n".join(sorted({"import sys", *imports}))
  return f"{header}\n\n\n{body.strip()}\n{_MAIN.format(output=output, prefix=PAIRS_PREFIX)}"


def load(source: str, name: str = "function_code") -> types.ModuleType:
  """Executes a generated script as a module (not as `__main__`)."""
  module = types.ModuleType(name)
  exec(compile(source, f"<{name}>", "exec"), module.__dict__)
  return module


_SEEDED = threading.Lock()


@contextlib.contextmanager
def seeded(name: str):
  """Seeds the global RNGs the functions draw from (`np.random`, `random`) from `name`, so that noise,
  corruption and stochastic string operations repeat run to run; restores them afterwards. One at a time."""
  with _SEEDED:
    numpy_state, python_state = np.random.get_state(), random.getstate()
    seed = zlib.crc32(name.encode())
    np.random.seed(seed)
    random.seed(seed)
    try:
      yield
    finally:
      np.random.set_state(numpy_state)
      random.setstate(python_state)
