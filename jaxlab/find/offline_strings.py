"""The offline interpreter for string functions: probe, then search compositions of the known operations.

Experiments: ~40 varied probe strings (every letter in both cases, digits, spaces, punctuation, lengths
from 1 to 34), twice, to tell stochastic functions apart (then five more times, to see their range).
Search: every single operation with every parameter value, then every (inner, outer) pair the generator
allows, inner parameters enumerated and outer parameters inferred from the first probe (a suffix, a letter
mapping, letters present) before the full check. A program is consistent when it reproduces every probe
(for a stochastic operation: every observed output is one it can produce). The first consistent program in
order of simplicity is described and written as code.
"""

import itertools
import string as _string
from collections.abc import Sequence

from jaxlab.find import strings

EXCEPTION = "None"   # what the function scripts print for an input that raises
PROBES = (
    "hello", "World", "a", "ab", "abc", "Python3", "The quick brown fox", "jumps over the lazy dog",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "Hello World!", "  padded text  ",
    "banana", "Mississippi", "12345", "a1b2c3d4", "MiXeD CaSe", "zebra", "Zz", "level", "AEIOU aeiou",
    "rhythm", "qwerty uiop", "x", "Data-2024", "keyboard", "OpenAI GPT", "sky", "mountain river",
    "Jovial Quokka", "ZigZag", "vexing WALTZ", "a.b,c;d", "cat dog", "!@#$%", "lorem ipsum dolor sit amet",
    "123 Main St", "Yak", "moon", "0",
) + tuple(
    # Letter k (of a-zA-Z) appears in probe b when bit b of k+1 is set: every letter gets its own pattern of
    # counts and positions, so parameters like "count the 'N's" are identified.
    "".join(c for k, c in enumerate(_string.ascii_letters) if (k + 1) >> b & 1) for b in range(6))


def _outcomes(op: str, params: tuple, text: str) -> frozenset:
  """Everything one operation can return for `text` (several for the stochastic ones)."""
  fn = strings.OPS[op].fn
  try:
    if strings.OPS[op].stochastic:
      if len(text) < 2:
        return frozenset((fn(text),))
      rng = _Fixed()
      results = set()
      for index in range(len(text)):
        rng.value = index
        results.add(fn(text, rng))
      return frozenset(results)
    return frozenset((fn(text, *params),))
  except Exception:  # noqa: BLE001 - an input the operation rejects
    return frozenset((EXCEPTION,))


class _Fixed:
  """A stand-in for `random` whose `randint` returns a chosen value."""
  value = 0

  def randint(self, a, b):
    return self.value


def _apply(op, params, inputs: Sequence[frozenset]) -> tuple[frozenset, ...]:
  out = []
  for texts in inputs:
    results = set()
    for text in texts:
      results |= _outcomes(op, params, text) if text != EXCEPTION else {EXCEPTION}
    out.append(frozenset(results))
  return tuple(out)


def enumerate_params(kind: str, outputs: Sequence[frozenset] = ()) -> list[tuple]:
  """Every parameter value of a kind (suffixes are taken from the observed outputs' endings)."""
  letters = _string.ascii_letters
  if kind == "":
    return [()]
  if kind == "number":
    return [(n,) for n in range(1, 10)]
  if kind == "letter":
    return [(c,) for c in letters]
  if kind == "letter_pair":
    return [(a, b) for a in letters for b in letters if a != b]
  if kind == "index_pair":
    return [(a, b) for a in range(10) for b in range(10) if a != b]
  if kind == "rand":
    return [(n,) for n in range(26)]
  if kind == "suffix":  # the appended letters, as they may show at either end of an output
    pieces = set()
    for out in itertools.islice(outputs, 3):
      for text in out:
        for k in range(1, 6):
          for piece in (text[-k:], text[:k]):
            if len(piece) == k and piece.isalpha():
              pieces.update({piece, piece.lower(), piece.upper(), piece[::-1], piece[::-1].lower(), piece[::-1].upper()})
    return [(p,) for p in sorted(pieces)]
  return []  # mappings are inferred, never enumerated


def _word_number(word: str) -> int | None:
  return strings.string_ops.NUMBER_WORDS.index(word) if word in strings.string_ops.NUMBER_WORDS else None


def infer_params(op: str, x: str, y: str) -> list[tuple]:
  """A few parameter values of `op` that could turn `x` into `y` (a superset of the right ones; all of
  them are checked on every probe afterwards). `x != y` for the operations that can act as the identity."""
  kind = strings.OPS[op].params
  if kind in ("", "number"):
    return enumerate_params(kind)
  letters = _string.ascii_letters
  if kind == "suffix":
    return [(y[len(x):],)] if y.startswith(x) and 1 <= len(y) - len(x) <= 5 else []
  diffs = [i for i, (a, b) in enumerate(zip(x, y)) if a != b] if len(x) == len(y) else None
  if kind == "letter_pair":
    return [(x[diffs[0]], y[diffs[0]])] if diffs and x[diffs[0]] in letters and y[diffs[0]] in letters else []
  if kind == "index_pair":
    if not diffs:
      return []
    if op == "swap_rand":
      return [(diffs[0], diffs[-1]), (diffs[-1], diffs[0])] if len(diffs) == 2 and diffs[-1] < 10 else []
    shift = (ord(y[diffs[0]]) - ord(x[diffs[0]])) % 26
    return [(shift, diffs[0])] if len(diffs) == 1 and shift < 10 and diffs[0] < 10 else []
  if kind == "rand":
    if not diffs or len(diffs) != 1:
      return []
    d = abs(ord(y[diffs[0]]) - ord(x[diffs[0]]))
    return [(d,)] if d <= 25 else []
  if kind == "letter":
    if op == "add_letter_if_needed":
      return [(y[-1],)] if y and y[-1] in letters else []
    if op == "insert_letter":
      return [(y[len(x) // 2],)] if len(y) == len(x) + 1 and y[len(x) // 2] in letters else []
    if op in ("split_string", "remove_substring"):
      return [(c,) for c in sorted(set(x) - set(y)) if c in letters]
    if op == "replace_vowels_with_character":
      return [(y[i],) for i in (diffs or [])[:1] if y[i] in letters]
    if op == "find_string":
      position = _word_number(y)
      return [(x[position],)] if position is not None and position < len(x) and x[position] in letters else \
          [(c,) for c in letters if c not in x] if y == "none" else []
    count = _word_number(y)  # count_character_repetitions, count_substring
    return [(c,) for c in letters if x.count(c) == count] if count is not None else []
  return []


def _identity_capable(op: str) -> bool:
  return strings.OPS[op].params in ("suffix", "letter_pair", "index_pair", "rand") or op in (
      "add_letter_if_needed", "split_string", "remove_substring", "replace_vowels_with_character")


def infer_mapping(before: Sequence[frozenset], after: Sequence[frozenset]) -> dict | None:
  """The letter permutation `map_string` would need, if one is consistent with every probe."""
  mapping = {}
  for b, a in zip(before, after):
    if len(b) != 1 or len(a) != 1:
      return None
    (x,), (y,) = b, a
    if len(x) != len(y):
      return None
    for c, d in zip(x, y):
      key = c.lower()
      if key in mapping and mapping[key] != d:
        return None
      if key in _string.ascii_lowercase:
        mapping[key] = d
      elif c != d:
        return None
  targets = set(mapping.values())
  if len(targets) != len(mapping) or not targets <= set(_string.ascii_lowercase):
    return None
  # Letters never seen map to the unused targets, in order (any completion is consistent with the probes).
  unused = iter(sorted(set(_string.ascii_lowercase) - targets))
  return {c: mapping[c] if c in mapping else next(unused) for c in _string.ascii_lowercase}


def _candidates(op, before, observed):
  """Parameter values to try for `op` mapping `before` to `observed`, inferred from one informative probe."""
  if strings.OPS[op].params == "mapping":
    mapping = infer_mapping(before, observed)
    return [(mapping,)] if mapping else []
  for b, o in zip(before, observed):
    if len(b) != 1 or len(o) != 1:
      continue
    (x,), (y,) = b, o
    if y == EXCEPTION or (x == y and _identity_capable(op)):
      continue
    return infer_params(op, x, y)
  return enumerate_params(strings.OPS[op].params) if strings.OPS[op].params != "suffix" else []


def _check(op, params, before, observed) -> bool:
  """Whether `op` maps every probe's `before` to what was observed (stopping at the first mismatch)."""
  for b, o in zip(before, observed):
    predicted = set()
    for text in b:
      predicted |= _outcomes(op, params, text) if text != EXCEPTION else {EXCEPTION}
    if not (o <= predicted if len(predicted) > 1 else o == predicted):
      return False
  return True


def search(inputs: Sequence[str], observed: Sequence[frozenset]) -> tuple | None:
  """The simplest program (steps) consistent with the observations, or None. Stochastic operations are
  considered only if repeated probes gave different outputs."""
  start = tuple(frozenset((t,)) for t in inputs)
  random_seen = any(len(o) > 1 for o in observed)
  ops = [op for op in strings.OPS if random_seen or not strings.OPS[op].stochastic]
  for op in ops:
    for params in _candidates(op, start, observed):
      if _check(op, params, start, observed):
        return ((op, params),)
  # Compositions: cheap inner operations first, the 2652 letter replacements last.
  inner = sorted((op for op in strings.INNER_POOL if op in ops), key=lambda op: strings.OPS[op].params == "letter_pair")
  seen = {start}
  for op in inner:
    for params in enumerate_params(strings.OPS[op].params, observed):
      middle = _apply(op, params, start)
      if middle in seen:
        continue
      seen.add(middle)
      for outer in ops:
        if op in strings.AVOID[outer]:
          continue
        for outer_params in _candidates(outer, middle, observed):
          if _check(outer, outer_params, middle, observed):
            return ((op, params), (outer, outer_params))
  return None


def code(steps) -> str:
  """The interpretation's code: the operations' source and `f`, which applies them."""
  return (f"import random\n\n\n{strings.ops_source([op for op, _ in steps])}\n\n\n"
          f"def f(string):\n  return {strings.call_expression(steps)}\n")


def reply(inputs: Sequence[str], observed: Sequence[frozenset]) -> str:
  steps = search(inputs, observed)
  if steps is None:
    examples = "; ".join(f"{x!r} -> {sorted(o)[0]!r}" for x, o in list(zip(inputs, observed))[:8])
    table = {x: sorted(o)[0] for x, o in zip(inputs, observed)}
    return (f"[DESCRIPTION]: No combination of the known string operations explains f(x). Examples: {examples}.\n"
            f"[CODE]:\n```python\nTABLE = {table!r}\n\n\ndef f(string):\n  return TABLE.get(string, string)\n```")
  description = strings.describe(steps)
  if any(strings.OPS[op].stochastic for op, _ in steps):
    description += " The output is random: repeated calls on the same input can differ."
  return f"[DESCRIPTION]: {description}\n[CODE]:\n```python\n{code(steps)}```"


def plan(seed: int):
  """The experiments, as a generator: yields lists of inputs, receives their outputs, returns the reply."""
  del seed  # the probes are fixed
  inputs = list(PROBES)
  first = yield inputs
  second = yield inputs
  observed = [{a, b} for a, b in zip(first, second)]
  if any(len(o) > 1 for o in observed):
    more = yield inputs * 5
    for i, value in enumerate(more):
      observed[i % len(inputs)].add(value)
  return reply(inputs, [frozenset(o) for o in observed])
