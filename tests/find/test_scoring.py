"""The metrics on hand-computed cases, the judge's unit test, the interval scorer and the results table."""

import math

import numpy as np
import pytest

from jaxlab.find import sandbox, score_numeric, score_strings, scoring
from jaxlab.lm import ScriptedLM

XS = np.arange(-128, 128) + 0.5


def test_numeric_score_is_the_nmse_indicator():
  assert score_numeric("def f(x):\n  return 2*x + 1", lambda x: 2 * x + 1) == 1
  # f(x) = x against x + c: NMSE = 256 c^2 / sum x^2, with sum x^2 = 2 * (690880 + 8128 + 32) = 1398080 over the 256 half-integers.
  total = float(np.sum(XS ** 2))
  assert total == 1398080.0
  c_pass, c_fail = math.sqrt(0.09 * total / 256), math.sqrt(0.11 * total / 256)
  result = scoring.numeric_score(f"def f(x):\n  return x + {c_pass}", lambda x: x)
  assert result.score == 1 and result.nmse == pytest.approx(0.09)
  assert score_numeric(f"def f(x):\n  return x + {c_fail}", lambda x: x) == 0


def test_numeric_score_skips_undefined_ground_truth_and_zeroes_errors():
  log_code = "import numpy as np\ndef f(x):\n  return 3*np.log(x) if x > 0 else 1e9"
  with np.errstate(invalid="ignore"):
    assert score_numeric(log_code, lambda x: 3 * np.log(x)) == 1   # x <= 0: nan ground truth, skipped
  assert score_numeric("def f(x):\n  return 1/(x - 0.5)", lambda x: x) == 0   # raises at x = 0.5
  assert score_numeric("def f(x):\n  return float('nan')", lambda x: x) == 0
  assert score_numeric("", lambda x: x) == 0
  quick = sandbox.Limits(wall_seconds=5, cpu_seconds=1)
  assert scoring.numeric_score("def f(x):\n  while True: pass", lambda x: x, limits=quick).status == "timeout"
  assert scoring.numeric_score("def f(x):\n  return 0", lambda x: 0.0).error.startswith("the ground truth is zero")


def test_numeric_score_handles_the_release_complex_roots():
  truth = lambda x: 17.4 * (x ** (1.0 / 2)) + -9.8   # noqa: E731 - complex for x < 0, as released
  assert score_numeric("def f(x):\n  return 17.4 * x**0.5 - 9.8", truth) == 1
  assert score_numeric("import numpy as np\ndef f(x):\n  return 17.4 * np.sqrt(x) - 9.8", truth) == 0


def test_strings_score_counts_exact_matches():
  pairs = [("abc", "cba"), ("Hi", "iH"), ("x", "x"), ("boom", "moob")]
  code = "def f(s):\n  if s == 'boom':\n    raise ValueError\n  return s[::-1] if s != 'Hi' else 'no'"
  result = scoring.strings_score(code, pairs)
  assert result.hits == [1, 0, 1, 0] and result.score == 0.5
  assert score_strings("def f(s):\n  return s[::-1]", pairs) == 1.0
  assert score_strings("def f(s):\n  return len(s)", pairs) == 0.0


@pytest.mark.parametrize("reply, strict", [
    ("[ANSWER]: 2", 2), ("[ANSWER]:3\n", 3), ('"[ANSWER]: 1"', 1), ("Example 2 is right", None),
    ("[ANSWER]: 1 ... on reflection [ANSWER]: 3", None), ("[ANSWER]: 2 [ANSWER]: 2", 2)])
def test_answer_parsing_is_strict(reply, strict):
  assert scoring.parse_answer(reply) == strict


def test_unit_test_with_a_judge():
  entry = {"test_vec": [[["a", "b", "c"], ["A", "x", "y"]], [["d", "e", "f"], ["q", "E", "r"]]], "correct_inx": [1, 2]}

  def judge(messages):
    prompt = messages[1]["content"]
    return "[ANSWER]: 1" if "input = a, output = A" in prompt else "Example 2, i.e. [ANSWER]: 3"
  result = scoring.unit_test("uppercases its input", entry, "strings", ScriptedLM(judge))
  assert result["unit_test"] == 0.5 and result["unit_test_lenient"] == 1.0
  entities = {"test_vec": [["NFL", "tree", "moon"]], "correct_inx": [1]}
  lm = ScriptedLM(["[ANSWER]: 1"])
  assert scoring.unit_test("sports", entities, "neurons_entities", lm)["unit_test"] == 1.0
  assert "Example 1: input = NFL\n" in lm.calls[0][1]["content"]


@pytest.mark.parametrize("domain, truth, iou", [
    ("Defined on [-128, 128]. There is unexpected behaviour in the interval [40, 60].", (50.0, 70.0), 1 / 3),
    ("For x < -36.3 the output is constant and random.", (-128.0, -36.3), 1.0),
    ("Undefined between -128 and 0. Between x = 10 and x = 20 the function behaves differently.", (10.0, 20.0), 1.0),
    ("No interval of unexpected behaviour was found.", (10.0, 20.0), 0.0),
    ("The domain is all real numbers [-128, 128].", (10.0, 20.0), 0.0),
])
def test_interval_iou(domain, truth, iou):
  assert scoring.interval_iou(domain, truth) == pytest.approx(iou)


def test_table_has_a_row_per_category():
  summaries = {"numeric": scoring.summarize([{"code": 1, "interval_iou": 0.5, "interval_detected": 1}, {"code": 0}]),
               "strings": scoring.summarize([{"code": 0.7}])}
  text = scoring.table(summaries)
  assert "| numeric | 2 | 0.500 | – | – | 0.500 | 1.000 |" in text
  assert "| strings | 1 | 0.700 |" in text
