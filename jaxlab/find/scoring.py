"""FIND's metrics, a corrupted-interval scorer the original lacks, and one results table per run.

* Numeric code: NMSE = sum |gt - pred|^2 / sum |gt|^2 over x = i + 0.5, i in [-128, 128), skipping points
  where the ground truth is not finite (or raises); the score is 1 if NMSE < 0.1, and 0 on any error in the
  interpretation's code (as the original; also when the ground truth is zero everywhere).
* String code: the fraction of the 10 unit-test pairs (the correct one of each triplet) reproduced exactly.
  Each pair is scored on its own (the original stopped at the first exception and divided by the pairs
  tried so far).
* Descriptions: the 3-way unit test, a judge LM answering `[ANSWER]: k`. `strict`: the answer must be
  given in that form (all such answers agreeing) and equal the correct index; `lenient` is the original's
  rule (the correct index appears anywhere in the reply), reported beside it.
* Corrupted interval: for functions whose benchmark variant is corrupted, the intersection over union of
  the interval named in `[DOMAIN]` with the true one (within [-128, 128]), and the rate of IoU >= 0.5.
Interpretation code always runs in `jaxlab.find.sandbox`.
"""

import concurrent.futures
import dataclasses
import json
import math
import re
from pathlib import Path
from collections.abc import Sequence

from jaxlab.errors import UserError
from jaxlab.find import dataset, numeric, prompts, sandbox, source, strings

NMSE_THRESHOLD = 0.1


@dataclasses.dataclass
class NumericScore:
  score: int
  nmse: float | None = None
  status: str = "ok"
  error: str = ""


@dataclasses.dataclass
class StringsScore:
  score: float
  hits: list[int] = dataclasses.field(default_factory=list)
  status: str = "ok"
  error: str = ""


def _as_complex(result: dict):
  if "complex" in result:
    return complex(*result["complex"])
  return result.get("value")


def _truth(f_true) -> tuple[list[float], list]:
  points, truth = [], []
  for x in numeric.TEST_POINTS:
    try:
      value = f_true(float(x))
      value = complex(value) if isinstance(value, complex) else float(value)
    except Exception:  # noqa: BLE001 - a ground truth that raises is skipped, like a non-finite one
      continue
    if math.isfinite(abs(value)):
      points.append(x)
      truth.append(value)
  return points, truth


def numeric_score(code: str, f_true, *, threshold: float = NMSE_THRESHOLD, seed: str | None = None,
                  limits: sandbox.Limits = sandbox.Limits()) -> NumericScore:
  """`seed`: draw the ground truth's noise and corruption from RNGs seeded with it (repeatable scores)."""
  if seed is None:
    points, truth = _truth(f_true)
  else:
    with source.seeded(seed):
      points, truth = _truth(f_true)
  if not code.strip():
    return NumericScore(0, status="error", error="no code")
  run = sandbox.run(code, [[x] for x in points], kind="number", limits=limits)
  if run.status != "ok":
    return NumericScore(0, status=run.status, error=run.error)
  failed = next((r["error"] for r in run.results if "error" in r), None)
  if failed:
    return NumericScore(0, status="error", error=failed)
  predictions = [_as_complex(r) for r in run.results]
  total = sum(abs(t) ** 2 for t in truth)
  if total == 0:
    return NumericScore(0, status="error", error="the ground truth is zero everywhere: NMSE undefined")
  nmse = sum(abs(t - p) ** 2 for t, p in zip(truth, predictions)) / total
  return NumericScore(int(nmse < threshold), nmse)


def strings_score(code: str, pairs: Sequence[tuple[str, str]], *, limits: sandbox.Limits = sandbox.Limits()) -> StringsScore:
  pairs = list(pairs)
  if not code.strip():
    return StringsScore(0.0, [0] * len(pairs), status="error", error="no code")
  run = sandbox.run(code, [[x] for x, _ in pairs], kind="str", limits=limits)
  if run.status != "ok":
    return StringsScore(0.0, [0] * len(pairs), status=run.status, error=run.error)
  hits = [int(r.get("value") == y) for r, (_, y) in zip(run.results, pairs)]
  return StringsScore(sum(hits) / max(len(hits), 1), hits)


def parse_answer(reply: str) -> int | None:
  """The index in `[ANSWER]: k`, if the reply gives one (several must agree), else None."""
  answers = {int(k) for k in re.findall(r"\[ANSWER\]\s*:\s*\"?(\d+)", reply)}
  return answers.pop() if len(answers) == 1 else None


def unit_test(description: str, entry: dict, category: str, judge) -> dict:
  """The 3-way unit test of one description: per triplet, the judge's reply and whether it was right."""
  strict, lenient, replies = [], [], []
  for vector, correct in zip(entry["test_vec"], entry["correct_inx"]):
    if category == "neurons_entities":
      prompt = prompts.judge_prompt(category, description, vector)
    else:
      prompt = prompts.judge_prompt(category, description, vector[0], vector[1])
    reply = judge.chat([{"role": "system", "content": prompts.JUDGE_SYSTEM}, {"role": "user", "content": prompt}],
                       temperature=0.0)
    replies.append(reply)
    strict.append(int(parse_answer(reply) == int(correct)))
    lenient.append(int(str(correct) in reply))
  n = max(len(strict), 1)
  return {"unit_test": sum(strict) / n, "unit_test_lenient": sum(lenient) / n, "judge_replies": replies}


_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_X = r"(?:x\s*=\s*)?"
_INTERVALS = (
    (rf"[\[\(]\s*({_NUMBER})\s*[,;]\s*({_NUMBER})\s*[\]\)]", "both"),
    (rf"between\s+{_X}({_NUMBER})\s+and\s+{_X}({_NUMBER})", "both"),
    (rf"from\s+{_X}({_NUMBER})\s+(?:to|until|through)\s+{_X}({_NUMBER})", "both"),
    (rf"({_NUMBER})\s*<=?\s*x\s*<=?\s*({_NUMBER})", "both"),
    (rf"\bx\s*(?:<=?|≤|is less than|is below|is smaller than)\s*({_NUMBER})", "below"),
    (rf"\bx\s*(?:>=?|≥|is greater than|is above|is larger than)\s*({_NUMBER})", "above"),
)
_ANOMALY = re.compile(r"unexpected|different|corrupt|anomal|irregular|constant|random|nois|deviat|strange|"
                      r"unusual|behav", re.I)


def described_intervals(domain: str) -> list[tuple[float, float]]:
  """Intervals named in a `[DOMAIN]` text, those in sentences about unexpected behaviour first; ones that
  cover (nearly) the whole test range are taken as the domain, not a corrupted interval."""
  lo, hi = numeric.TEST_RANGE
  found = []
  for pattern, kind in _INTERVALS:
    for match in re.finditer(pattern, domain, re.I):
      values = [float(v) for v in match.groups()]
      a, b = (values if kind == "both" else (lo, values[0]) if kind == "below" else (values[0], hi))
      a, b = max(min(a, b), lo), min(max(a, b), hi)
      if b - a >= 0.9 * (hi - lo):
        continue
      start = domain.rfind(".", 0, match.start()) + 1
      end = domain.find(".", match.end())
      sentence = domain[start:end if end >= 0 else len(domain)]
      found.append((not _ANOMALY.search(sentence), match.start(), (a, b)))
  return [interval for *_, interval in sorted(found)]


def interval_iou(domain: str, truth: tuple[float, float]) -> float:
  intervals = described_intervals(domain)
  if not intervals:
    return 0.0
  (a, b), (c, d) = intervals[0], truth
  lo, hi = numeric.TEST_RANGE
  c, d = max(c, lo), min(d, hi)
  overlap = max(0.0, min(b, d) - max(a, c))
  union = (b - a) + (d - c) - overlap
  return overlap / union if union > 0 else 0.0


def _read(folder: Path, name: str) -> str:
  path = folder / name
  return path.read_text() if path.is_file() else ""


def score_function(function, folder: Path, unit_tests: dict, judge=None) -> dict:
  """Every metric that applies to one interpreted function."""
  record = {"name": function.name}
  description = _read(folder, "description.txt").split("[CODE]:")[0]
  if function.category == "numeric":
    result = numeric_score(_read(folder, "code.py"), function, seed=f"score/{function.name}")
    record.update(variant=function.variant, code=result.score, nmse=result.nmse, status=result.status,
                  error=result.error[:300])
    if function.variant == "corrupted":
      iou = interval_iou(_read(folder, "domain.txt"), function.corrupted_interval())
      record.update(interval_iou=iou, interval_detected=int(iou >= 0.5))
  elif function.category == "strings":
    if function.name in unit_tests:
      result = strings_score(_read(folder, "code.py"), strings.correct_pairs(unit_tests[function.name]))
      record.update(code=result.score, hits=result.hits, status=result.status, error=result.error[:300])
  if judge is not None and function.name in unit_tests and function.category != "numeric":
    record.update(unit_test(description, unit_tests[function.name], function.category, judge))
  return record


METRICS = (("code", "code"), ("unit_test", "description (unit test)"),
           ("unit_test_lenient", "description (unit test, lenient)"), ("interval_iou", "corrupted interval IoU"),
           ("interval_detected", "corrupted interval found (IoU >= 0.5)"))


def summarize(records: list[dict]) -> dict:
  summary = {"n": len(records)}
  for key, _ in METRICS:
    values = [r[key] for r in records if r.get(key) is not None]
    if values:
      summary[key] = sum(values) / len(values)
      summary[f"{key}_n"] = len(values)
  return summary


def table(summaries: dict[str, dict]) -> str:
  """category x metric, like the paper's Table 1."""
  header = "| category | n | " + " | ".join(title for _, title in METRICS) + " |"
  lines = [header, "|" + "---|" * (len(METRICS) + 2)]
  for category, s in summaries.items():
    cells = [f"{s[k]:.3f}" if k in s else "–" for k, _ in METRICS]
    lines.append(f"| {category} | {s['n']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def score_run(dataset_root: str | Path, results_root: str | Path, *, judge=None, categories: Sequence[str] | None = None,
              workers: int = 2, neuron_lm=None, progress=None) -> dict[str, dict]:
  """Scores every interpreted function under `results_root/<category>[_hints|_single_round]/`; writes
  `scores.json` in each of those folders and `scores.json` + `table.md` in `results_root`."""
  results_root = Path(results_root)
  runs = []
  for category in dataset.CATEGORIES:
    for suffix in ("", "_hints", "_single_round"):
      folder = results_root / (category + suffix)
      if folder.is_dir() and (categories is None or category in categories):
        runs.append((category, folder))
  if not runs:
    raise UserError(f"no interpretations under {results_root} (expected e.g. {results_root}/numeric/f00000/)")
  summaries = {}
  for category, folder in runs:
    functions = {f.name: f for f in dataset.load(dataset_root, category, neuron_lm=neuron_lm)}
    unit_tests = dataset.load_unit_tests(dataset_root, category)
    if not unit_tests and (category == "strings" or (judge is not None and category != "numeric")):
      path = Path(dataset_root) / category / "unit_test_data.json"
      raise UserError(f"{path} not found: scoring {category} needs its unit tests; rebuild the benchmark with "
                      f"`jaxlab find build` (or copy the file from the release), or leave {category} out with "
                      "--categories")
    done = sorted(p for p in folder.iterdir() if (p / "description.txt").is_file() and p.name in functions)
    pool_size = workers if judge is None else 1
    with concurrent.futures.ThreadPoolExecutor(max(pool_size, 1)) as pool:
      records = list(pool.map(lambda p: score_function(functions[p.name], p, unit_tests, judge), done))
    (folder / "scores.json").write_text(json.dumps(records, indent=1))
    summaries[folder.name] = summarize(records)
    if progress:
      progress(f"{folder.name}: {summaries[folder.name]}")
  (results_root / "scores.json").write_text(json.dumps(summaries, indent=1))
  (results_root / "table.md").write_text(table(summaries) + "\n")
  return summaries

