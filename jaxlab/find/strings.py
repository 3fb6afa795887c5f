"""FIND string functions: the 67 atomic operations, their compositions, seeded generation and unit tests.

A string function applies one operation, or an inner then an outer one (the original's
`compose_1input_1input`), each with its random parameters. Generation follows the original sampler: 30%
single operations, 70% compositions whose inner operation comes from the pool without first/last/middle
character and `map_string`, with the avoid-rules that reject degenerate pairs. Unit tests follow
`strings/unit_test_data.json`: per function, 10 triplets of (input, output) pairs, one of which is a true
execution.
"""

import ast
import dataclasses
import functools
import inspect
import json
import random
import string as _string
from collections.abc import Sequence

from jaxlab.errors import UserError
from jaxlab.find import source, string_ops


@dataclasses.dataclass(frozen=True)
class Op:
  """An atomic operation: its parameter kind, and what it does, as a sentence with `{0}`, `{1}` slots."""
  name: str
  params: str
  does: str
  stochastic: bool = False

  @property
  def fn(self):
    return getattr(string_ops, self.name)


# In the order of the original's `sample_single_f` list (sampling is uniform over it).
OPS = {op.name: op for op in (
    Op("convert_to_lowercase", "", "converts the string to lowercase"),
    Op("convert_to_uppercase", "", "converts the string to uppercase"),
    Op("capitalize_string", "", "capitalizes the first character and lowercases the rest"),
    Op("reverse_string", "", "reverses the string"),
    Op("reverse_string_first_half", "", "reverses the first half of the string (the first len//2 characters)"),
    Op("reverse_string_last_half", "", "reverses the second half of the string (from position len//2 on)"),
    Op("extract_digits", "", "returns the digits of the string as English words separated by spaces"),
    Op("remove_digits", "", "removes all digits"),
    Op("extract_uppers", "", "keeps only the uppercase letters"),
    Op("remove_whitespace", "", "removes all whitespace"),
    Op("get_string_length", "", "returns the length of the string as an English word ('unknown' above thirty)"),
    Op("get_digit_indexes", "",
       "returns, if the string ends with a digit, the position (as an English word) of that digit's first "
       "occurrence, and an empty string otherwise"),
    Op("get_alpha_indexes", "",
       "returns, for every letter, the position of its first occurrence as an English word, separated by spaces"),
    Op("get_first_character", "", "returns the first character"),
    Op("get_last_character", "", "returns the last character"),
    Op("get_mid_character", "", "returns the middle character (the middle two for an even length)"),
    Op("remove_duplicates", "", "removes repeated characters, keeping each character's first occurrence"),
    Op("reverse_words", "", "reverses each whitespace-separated word and joins the words with single spaces"),
    Op("count_vowels", "", "returns the number of vowels as an English word"),
    Op("replace_vowels_with_character", "letter", "replaces every vowel with '{0}'"),
    Op("replace_vowels_with_first", "", "replaces every vowel with the first character"),
    Op("replace_vowels_with_last", "", "replaces every vowel with the last character"),
    Op("replace_vowels_with_mid", "", "replaces every vowel with the character at position len//2"),
    Op("replace_vowels_with_ind_of_count", "",
       "replaces every vowel with the character at position (number of vowels - 1)"),
    Op("reverse_vowels", "", "reverses the order of the vowels, leaving the other characters in place"),
    Op("capitalize_alternating_letters", "",
       "uppercases the characters at even positions and lowercases those at odd positions"),
    Op("count_consonants", "",
       "returns the number of consonants (counting lowercase 'a' as one) as an English word"),
    Op("count_uppercase", "", "returns the number of uppercase letters as an English word"),
    Op("count_lowercase", "", "returns the number of lowercase letters as an English word"),
    Op("count_character_repetitions", "letter", "returns how many times '{0}' occurs, as an English word"),
    Op("string_strip", "", "strips leading and trailing whitespace"),
    Op("string_lstrip", "", "strips leading whitespace"),
    Op("string_rstrip", "", "strips trailing whitespace"),
    Op("add_number_to_string", "number",
       "shifts every letter {0} places forward in the alphabet (wrapping around, keeping case)"),
    Op("advance_by_character_order", "number",
       "shifts every letter forward by the alphabet position (a=0) of the character at index {0} and "
       "lowercases the letters"),
    Op("substract_by_character_order", "number",
       "shifts every letter backward by the alphabet position (a=0) of the character at index {0} and "
       "lowercases the letters"),
    Op("add_len_to_string", "", "shifts every letter forward in the alphabet by the length of the string"),
    Op("add_number_to_middle", "number",
       "shifts the middle letter of an odd-length string (of 3 or more characters) {0} places forward"),
    Op("add_len_to_middle", "",
       "shifts the middle letter of an odd-length string (of 3 or more characters) forward by the length"),
    Op("add_order_to_inx", "",
       "shifts the letter at a random position forward by that position (random on every call)", True),
    Op("add_order_of_inx1_to_inx2", "index_pair", "shifts the letter at index {1} forward by {0} places"),
    Op("sub_order_to_inx", "",
       "shifts the letter at a random position backward by that position (random on every call)", True),
    Op("sub_order_of_inx1_to_inx2", "index_pair", "shifts the letter at index {1} forward by {0} places"),
    Op("subtract_number_to_string", "number",
       "shifts every letter {0} places backward in the alphabet (wrapping around, keeping case)"),
    Op("subtract_middle_character", "number",
       "shifts the middle letter of an odd-length string (of 3 or more characters) {0} places backward"),
    Op("insert_number", "number", "inserts the digit {0} at position len//2"),
    Op("add_letter_if_needed", "letter", "appends '{0}' unless the string already ends with it"),
    Op("insert_letter", "letter", "inserts '{0}' at position len//2"),
    Op("split_string", "letter", "splits the string on '{0}' and joins the pieces with spaces"),
    Op("string_concatenate", "suffix", "appends '{0}'"),
    Op("count_substring", "letter", "returns how many times '{0}' occurs, as an English word"),
    Op("find_string", "letter",
       "returns the position of the first '{0}' as an English word, or 'none' if it does not occur"),
    Op("remove_substring", "letter", "removes every '{0}'"),
    Op("duplicate_first_letter", "", "appends the first character to the end"),
    Op("duplicate_last_letter", "", "appends the last character to the end"),
    Op("duplicate_mid_letter", "", "appends the character at position len//2 to the end"),
    Op("swap_first_last", "", "swaps the first and the last character"),
    Op("swap_rand", "index_pair", "swaps the characters at positions {0} and {1} (if both exist)"),
    Op("map_string", "mapping", "replaces letters through the substitution {0} (output letters lowercase)"),
    Op("get_first_character_ordinality", "",
       "returns the alphabet position (a=1) of the first character as an English word ('zero' for a non-letter)"),
    Op("get_last_character_ordinality", "",
       "returns the alphabet position (a=1) of the last character as an English word ('zero' for a non-letter)"),
    Op("get_mid_character_ordinality", "",
       "returns the alphabet position (a=1) of the character at position len//2 as an English word ('zero' "
       "for a non-letter)"),
    Op("replace_substring", "letter_pair", "replaces every '{0}' with '{1}'"),
    Op("shift_last_letter_rand", "rand",
       "moves a final letter {0} code points forward ('z' and 'Z' wrap to 'a' and 'A')"),
    Op("shift_first_letter_rand", "rand",
       "moves a leading letter {0} code points forward ('z' and 'Z' wrap to 'a' and 'A')"),
    Op("shift_last_letter_predecessor_rand", "rand",
       "moves a final letter {0} code points backward ('a' and 'A' wrap to 'z' and 'Z')"),
    Op("shift_first_letter_predecessor_rand", "rand",
       "moves a leading letter {0} code points backward ('a' and 'A' wrap to 'z' and 'Z')"),
)}

# Operations that may be the inner one of a composition.
INNER_POOL = tuple(name for name in OPS if name not in (
    "get_first_character", "get_last_character", "get_mid_character", "map_string"))


def _avoid_rules() -> dict[str, frozenset[str]]:
  """Inner operations each outer one rejects: itself, and pairs whose composition is degenerate.

  The original spells these out as one dictionary, in which some missing commas glue names together
  (e.g. 'string_rstrip' 'add_order_to_inx'); these are the rules it intended.
  """
  avoid = {name: {name} for name in OPS}
  whitespace = {"remove_whitespace", "string_strip", "string_lstrip", "string_rstrip"}
  vowel_replacements = {"replace_vowels_with_character", "replace_vowels_with_first", "replace_vowels_with_last",
                        "replace_vowels_with_mid", "replace_vowels_with_ind_of_count"}
  # Outer operations that summarise their input (counts, positions, single characters) ignore what these
  # inner ones change.
  summaries = {"extract_digits", "get_string_length", "get_digit_indexes", "get_alpha_indexes",
               "get_first_character", "get_last_character", "get_mid_character", "count_vowels",
               "count_consonants", "count_uppercase", "count_lowercase", "count_character_repetitions",
               "count_substring"}
  summary_inner = {
      "get_string_length", "convert_to_lowercase", "extract_digits", "remove_digits", "get_digit_indexes",
      "get_alpha_indexes", "count_vowels", "replace_vowels_with_ind_of_count", "count_consonants",
      "count_uppercase", "count_lowercase", "string_strip", "string_lstrip", "string_rstrip", "add_order_to_inx",
      "add_order_of_inx1_to_inx2", "sub_order_to_inx", "sub_order_of_inx1_to_inx2", "find_string", "map_string",
      "count_substring", "count_character_repetitions"}
  avoid["convert_to_lowercase"] |= {"convert_to_uppercase", "extract_uppers", "count_uppercase"}
  avoid["convert_to_uppercase"] |= {"convert_to_lowercase", "count_lowercase"}
  avoid["extract_uppers"] |= {"count_lowercase"}
  avoid["remove_digits"] |= {"extract_digits", "get_digit_indexes"}
  for name in whitespace:
    avoid[name] |= whitespace
  for name in vowel_replacements:
    avoid[name] |= vowel_replacements | {"reverse_vowels", "count_vowels"}
  for name in summaries:
    avoid[name] |= summary_inner
  for name in ("get_first_character", "get_last_character", "get_mid_character"):
    avoid[name] |= {"split_string", "remove_substring"}
  for name in ("count_vowels", "count_consonants", "count_uppercase", "count_lowercase",
               "count_character_repetitions", "count_substring"):
    avoid[name] |= {"replace_vowels_with_character"}
  return {name: frozenset(names) for name, names in avoid.items()}


AVOID = _avoid_rules()


def sample_params(kind: str, rng: random.Random) -> tuple:
  """The original's parameter draws for each kind."""
  letters = _string.ascii_letters
  if kind == "":
    return ()
  if kind == "number":
    return (rng.randint(1, 9),)
  if kind == "letter":
    return (rng.choice(letters),)
  if kind == "suffix":
    return ("".join(rng.choice(letters) for _ in range(rng.randint(1, 5))),)
  if kind == "letter_pair":
    old, new = rng.sample(letters, 2)
    return (old, new)
  if kind == "index_pair":
    first, second = rng.sample(range(10), 2)
    return (first, second)
  if kind == "mapping":
    shuffled = list(string_ops.ALPHABET)
    rng.shuffle(shuffled)
    return (dict(zip(string_ops.ALPHABET, shuffled)),)
  if kind == "rand":
    return (rng.randint(0, 25),)
  raise ValueError(f"unknown parameter kind {kind!r}")


Step = tuple[str, tuple]


@dataclasses.dataclass(frozen=True)
class StringFunction:
  """`steps` in the order they are applied: `((inner, params), (outer, params))` for a composition."""
  name: str
  steps: tuple[Step, ...]

  category = "strings"
  prompt = "strings"
  initial = None

  @property
  def spec(self) -> str:
    """The original's name string, e.g. `convert_to_uppercase;reverse_string;compose_1input_1input(...)`."""
    def params_text(params):
      return ", ".join(json.dumps(p) for p in params)
    if len(self.steps) == 1:
      op, params = self.steps[0]
      return f"{op}({params_text(params)})"
    (inner, inner_params), (outer, outer_params) = self.steps
    return f"{outer};{inner};compose_1input_1input(({params_text(outer_params)}), ({params_text(inner_params)}))"

  @property
  def stochastic(self) -> bool:
    return any(OPS[op].stochastic for op, _ in self.steps)

  def describe(self) -> str:
    return describe(self.steps)

  def source(self) -> str:
    return script_for(self.steps)

  @functools.cached_property
  def _module(self):
    return source.load(self.source(), self.name)

  def __call__(self, text: str) -> str:
    return self._module.function(text)

  def run(self, args: Sequence[str]) -> str:
    """What `python function_code.py *args` prints."""
    return self._module._pairs(list(args))

  def metadata(self) -> dict:
    return {"dir": self.name, "name": self.spec, "type": "simple" if len(self.steps) == 1 else "compose",
            "steps": [[op, list(params)] for op, params in self.steps], "description": self.describe()}

  @classmethod
  def from_metadata(cls, entry: dict) -> "StringFunction":
    return cls(entry["dir"], tuple((op, tuple(params)) for op, params in entry["steps"]))


def describe(steps: Sequence[Step]) -> str:
  """The ground-truth description: what each step does, in order."""
  def sentence(op, params):
    shown = [_show_param(p) for p in params]
    return OPS[op].does.format(*shown)
  if len(steps) == 1:
    return f"The function {sentence(*steps[0])}."
  parts = [sentence(*step) for step in steps]
  return f"The function first {parts[0]}; then it {parts[1]}."


def _show_param(param) -> str:
  if isinstance(param, dict):
    moved = {k: v for k, v in param.items() if k != v}
    return "{" + ", ".join(f"{k}->{v}" for k, v in sorted(moved.items())) + "}"
  return str(param)


@functools.cache
def _module_definitions() -> tuple[dict[str, str], dict[str, frozenset[str]], tuple[str, ...]]:
  """Top-level definitions of `string_ops`: name -> source, name -> names it uses, module order."""
  text = inspect.getsource(string_ops)
  tree = ast.parse(text)
  sources, uses, order = {}, {}, []
  for node in tree.body:
    if isinstance(node, ast.FunctionDef):
      names = [node.name]
    elif isinstance(node, ast.Assign):
      names = [t.id for t in node.targets if isinstance(t, ast.Name)]
    else:
      continue
    segment = ast.get_source_segment(text, node)
    used = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    for name in names:
      sources[name], uses[name] = segment, used
      order.append(name)
  return sources, uses, tuple(order)


def ops_source(names: Sequence[str]) -> str:
  """The source of operations `names` and everything they use from `string_ops`, in module order."""
  sources, uses, order = _module_definitions()
  needed, stack = set(), list(names)
  while stack:
    name = stack.pop()
    if name in needed:
      continue
    needed.add(name)
    stack.extend(u for u in uses[name] if u in sources and u != name)
  return "\n\n\n".join(sources[name] for name in order if name in needed)


def call_expression(steps: Sequence[Step], argument: str = "string") -> str:
  expression = argument
  for op, params in steps:
    expression = f"{op}({', '.join([expression, *map(repr, params)])})"
  return expression


def script_for(steps: Sequence[Step]) -> str:
  body = f"{ops_source([op for op, _ in steps])}\n\n\ndef function(string):\n  return {call_expression(steps)}"
  return source.script(body, output="function(arg)", imports=("import random",))


def sample_steps(rng: random.Random, single: bool) -> tuple[Step, ...]:
  """One operation, or an inner one then an outer one (which must not avoid it)."""
  def draw(names):
    op = rng.choice(names)
    return op, sample_params(OPS[op].params, rng)
  if single:
    return (draw(tuple(OPS)),)
  outer = draw(tuple(OPS))
  allowed = tuple(name for name in INNER_POOL if name not in AVOID[outer[0]])
  return (draw(allowed), outer)


def generate(n: int, seed: int = 0, p_single: float = 0.3) -> list[StringFunction]:
  """`n` distinct string functions, f00000 onwards: single operations with probability `p_single`.
  As in the original, a repeat is re-drawn with the same choice of single or composed."""
  rng = random.Random(seed)
  functions, seen = [], set()
  while len(functions) < n:
    single = rng.random() < p_single
    while True:
      steps = sample_steps(rng, single)
      key = json.dumps(steps, sort_keys=True)
      if key not in seen:
        break
    seen.add(key)
    functions.append(StringFunction(f"f{len(functions):05d}", steps))
  return functions


# Material for test inputs, in the spirit of the release's LM-suggested inputs (words, sentences, mixed
# case, digits, punctuation, quotes).
WORDS = (
    "apple", "banana", "cherry", "hello", "world", "python", "function", "string", "test", "example", "code",
    "data", "music", "river", "mountain", "ocean", "guitar", "planet", "zebra", "quiz", "jungle", "puzzle",
    "keyboard", "window", "orange", "purple", "yellow", "coffee", "island", "bridge", "rocket", "garden",
    "letter", "number", "silent", "listen", "level", "radar", "kayak", "Mississippi", "Amman", "Paris",
    "London", "Tokyo", "Berlin", "Einstein", "Shakespeare", "algorithm", "queue", "rhythm", "sky", "crypt",
    "AEIOU", "abcdefghijklmnopqrstuvwxyz", "The quick brown fox", "jumps over the lazy dog", "I am an AI",
    "This is a test", "welcome to the party", "Hello World", "topCODER", "CamelCase", "snake_case",
)
_PUNCTUATION = "!?.,;:-_'\"@#$%&*()"


def random_test_string(rng: random.Random) -> str:
  """One varied test input."""
  kind = rng.randrange(9)
  word = rng.choice(WORDS)
  if kind == 0:
    return word
  if kind == 1:
    return " ".join(rng.choice(WORDS).lower() for _ in range(rng.randint(2, 4)))
  if kind == 2:
    return word + str(rng.randint(0, 9999))
  if kind == 3:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)
  if kind == 4:
    return "".join(rng.choice(_string.ascii_letters) for _ in range(rng.randint(1, 12)))
  if kind == 5:
    return rng.choice(_PUNCTUATION) + word if rng.random() < 0.5 else word + rng.choice(_PUNCTUATION)
  if kind == 6:
    return str(rng.randint(0, 10**rng.randint(1, 8)))
  if kind == 7:
    return " " * rng.randint(1, 3) + word + " " * rng.randint(0, 2)
  return word.upper() if rng.random() < 0.5 else word.capitalize()


def _try(function, text):
  try:
    return function(text)
  except Exception:
    return None


def unit_tests(functions: Sequence[StringFunction], seed: int = 0, n_tests: int = 10) -> list[dict]:
  """`unit_test_data.json` entries: per function, `n_tests` triplets with one true (input, output) pair.

  The distractors are executions of other functions on their own inputs, kept only when they are not
  also a true execution of this function.
  """
  if len(functions) == 1:
    raise UserError("one string function cannot have unit tests: their distractors come from the other "
                    "functions; generate at least 2 (--strings 2)")
  rng = random.Random(seed)
  state = random.getstate()
  random.seed(seed)  # the stochastic operations draw from `random`
  try:
    correct = []
    for function in functions:
      pairs, tried = {}, 0
      while len(pairs) < n_tests and tried < 50 * n_tests:
        tried += 1
        text = random_test_string(rng)
        output = _try(function, text)
        if text not in pairs and isinstance(output, str):
          pairs[text] = output
      correct.append(list(pairs.items()))
    entries = []
    for i, function in enumerate(functions):
      vectors, positions = [], []
      for text, output in correct[i]:
        chosen = [(text, output)]
        while len(chosen) < 3:
          j = rng.randrange(len(functions))
          if j == i or not correct[j]:
            continue
          other_text, other_output = rng.choice(correct[j])
          if other_text in (t for t, _ in chosen) or _try(function, other_text) == other_output:
            continue
          chosen.append((other_text, other_output))
        position = rng.randint(1, 3)
        chosen.insert(position - 1, chosen.pop(0))
        vectors.append([[t for t, _ in chosen], [o for _, o in chosen]])
        positions.append(position)
      entries.append({"name": function.name, "test_vec": vectors, "correct_inx": positions})
    return entries
  finally:
    random.setstate(state)


def correct_pairs(entry: dict) -> list[tuple[str, str]]:
  """The true (input, output) pair of each triplet of a unit-test entry (positions are 1-based)."""
  return [(str(inputs[k - 1]), outputs[k - 1]) for (inputs, outputs), k in zip(entry["test_vec"], entry["correct_inx"])]
