"""FIND: the function-description benchmark (numeric, string and synthetic-neuron functions), the
interpreter-agent protocol with pluggable LMs, an offline interpreter, and sandboxed scoring.

`score_numeric(code, f_true)` and `score_strings(code, pairs)` score one interpretation's code.
"""


def score_numeric(code: str, f_true, threshold: float = 0.1) -> int:
  """1 if `code` (a `[CODE]` text defining one function) has NMSE < `threshold` against the callable
  `f_true` on the 256 points x = i + 0.5, i in [-128, 128); else 0. The code runs in the sandbox."""
  from jaxlab.find import scoring
  return scoring.numeric_score(code, f_true, threshold=threshold).score


def score_strings(code: str, pairs) -> float:
  """The fraction of `(input, output)` pairs that `code` reproduces exactly, run in the sandbox."""
  from jaxlab.find import scoring
  return scoring.strings_score(code, pairs).score
