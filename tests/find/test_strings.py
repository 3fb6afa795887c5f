"""String functions: the 67 operations (quirks included), composition rules, generation, unit tests, export."""

import collections
import json
import random
import subprocess
import sys

import pytest

from jaxlab.find import dataset, source, string_ops, strings


def test_operation_set_and_composition_rules():
  assert len(strings.OPS) == 67 and len(strings.INNER_POOL) == 63
  assert not {"get_first_character", "get_last_character", "get_mid_character", "map_string"} & set(strings.INNER_POOL)
  assert {"convert_to_uppercase", "extract_uppers", "count_uppercase"} <= strings.AVOID["convert_to_lowercase"]
  # The original's dictionary glues 'string_rstrip' 'add_order_to_inx' together; both are meant.
  assert {"string_rstrip", "add_order_to_inx"} <= strings.AVOID["get_alpha_indexes"]
  assert all(name in strings.AVOID[name] for name in strings.OPS)


@pytest.mark.parametrize("op, args, expected", [
    ("get_digit_indexes", ("ab1c2",), "four"),          # quirk: only a final digit counts
    ("get_digit_indexes", ("a1b",), ""),
    ("count_consonants", ("a",), "one"),                # quirk: lowercase 'a' is in the consonant list
    ("sub_order_of_inx1_to_inx2", ("abcd", 2, 1), "adcd"),   # quirk: adds
    ("get_alpha_indexes", ("aba",), "zero one zero"),
    ("extract_digits", ("a1b2",), "one two"),
    ("reverse_vowels", ("hello world",), "hollo werld"),
    ("advance_by_character_order", ("Abc", 1), "bcd"),
    ("add_number_to_middle", ("abYde", 3), "abBde"),
    ("replace_vowels_with_ind_of_count", ("xyz",), "xyz"),
    ("shift_last_letter_rand", ("az", 5), "aa"),
    ("shift_first_letter_rand", ("x", 5), "}"),          # raw code points
    ("map_string", ("Ab!", {**{c: c for c in "abcdefghijklmnopqrstuvwxyz"}, "a": "q"}), "qb!"),
    ("get_string_length", ("x" * 31,), "unknown"),
    ("find_string", ("hello", "z"), "none"),
])
def test_operations_on_hand_computed_cases(op, args, expected):
  assert getattr(string_ops, op)(*args) == expected


def test_counts_above_thirty_raise_like_the_original():
  with pytest.raises(KeyError):
    string_ops.count_lowercase("a" * 31)


def test_generation():
  functions = strings.generate(1000, seed=0)
  assert [f.steps for f in functions] == [f.steps for f in strings.generate(1000, seed=0)]
  assert len({json.dumps(f.steps) for f in functions}) == 1000
  single = sum(len(f.steps) == 1 for f in functions)
  assert 250 < single < 350   # 30% +- 3.5 sigma
  for f in functions:
    if len(f.steps) == 2:
      (inner, _), (outer, _) = f.steps
      assert inner in strings.INNER_POOL and inner not in strings.AVOID[outer]
  assert collections.Counter(op for f in functions for op, _ in f.steps).keys() == strings.OPS.keys()


def test_unit_tests_have_one_true_execution_per_triplet():
  functions = [f for f in strings.generate(40, seed=3) if not f.stochastic]
  entries = strings.unit_tests(functions, seed=0)
  for function, entry in zip(functions, entries):
    assert entry["name"] == function.name and len(entry["test_vec"]) == 10
    for (inputs, outputs), k in zip(entry["test_vec"], entry["correct_inx"]):
      assert k in (1, 2, 3) and len(set(inputs)) == 3
      for i, (x, y) in enumerate(zip(inputs, outputs), 1):
        try:
          matches = function(x) == y
        except Exception:
          matches = False
        assert matches == (i == k)


def test_release_unit_tests_match_the_released_function(shared_data):
  """strings/f00001 of the release appends 'lvmBi'; its 10 correct unit-test pairs are its executions."""
  tests = dataset.load_unit_tests(shared_data / "find", "strings")
  assert len(tests) == 1000
  function = strings.StringFunction("f00001", (("string_concatenate", ("lvmBi",)),))
  pairs = strings.correct_pairs(tests["f00001"])
  assert len(pairs) == 10 and all(function(x) == y for x, y in pairs)


def test_exported_script_prints_what_runs_in_process(tmp_path):
  function = strings.StringFunction("f00000", (("reverse_words", ()), ("add_order_of_inx1_to_inx2", (3, 1))))
  script = tmp_path / "function_code.py"
  script.write_text(function.source())
  args = ["Hello World", "", "ab"]
  printed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True).stdout
  assert printed.strip() == function.run(args).strip()
  assert printed.startswith(source.PAIRS_PREFIX + "(Hello World, ooleH dlroW) ")


def test_stochastic_functions_use_random():
  function = strings.StringFunction("f00000", (("add_order_to_inx", ()),))
  random.seed(0)
  outputs = {function("abcdefgh") for _ in range(50)}
  assert len(outputs) > 3 and function.stochastic
