"""The offline interpreter: it must explain the benchmark's families, noise, corruption and compositions."""

import dataclasses

import pytest

from jaxlab.find import numeric, protocol, scoring, strings
from jaxlab.find.offline import OfflineInterpreter, parse_pairs

LM = OfflineInterpreter()


def numeric_function(kind, params, **kwargs):
  return numeric.NumericFunction("f00000", kind, params, numeric.domain_of(kind.split(";")[0]), **kwargs)


@pytest.mark.parametrize("function", [
    numeric_function("polynomial", [1.5, -2.0, 0.3, 4.0]),
    numeric_function("sin", [-3.9, 0.4, 5.4, 1.9]),                 # a period under the probe spacing
    numeric_function("tanh", [3.5, 3.4, 5.4, 6.0]),
    numeric_function("gaussian", [-9.2, 6.0]),
    numeric_function("rational", [[1.4, 2.0], [6.3, -0.2, 9.7, -3.6]]),
    numeric_function("square_wave", [3.7, -3.1]),
    numeric_function("rectangle", [4.6]),
    numeric_function("logarithm", [5.1, -3.1, 8.0]),
    numeric_function("step;square_wave;multiply_two", [[12.0, -3.1, -29.7], [6.7, 1.7]]),
    numeric_function("floor;relu;sum_two", [None, [-8.1, 5.2, 0.1]]),
], ids=lambda f: f.kind)
def test_numeric_families_are_recovered(function):
  result = protocol.interpret_one(function, LM)
  assert result.rounds <= 8 and "[DESCRIPTION]" in result.reply
  assert scoring.numeric_score(result.code, function).score == 1, result.description


def test_corrupted_interval_is_found_and_scored():
  function = numeric_function("absolute", [4.0, -20.0], variant="corrupted", corruption_type="interval_inside",
                              corruption_mean=150.0, boundary=(31.1, 47.3))
  result = protocol.interpret_one(function, LM)
  assert scoring.interval_iou(result.domain, function.corrupted_interval()) > 0.98
  assert scoring.numeric_score(result.code, function).score == 1
  larger = dataclasses.replace(function, corruption_type="interval_larger", boundary=(60.0,))
  result = protocol.interpret_one(larger, LM)
  assert scoring.interval_iou(result.domain, larger.corrupted_interval()) > 0.98


def test_noise_is_averaged():
  function = numeric_function("linear", [3.0, 7.0], variant="noised", noise_type="normal")
  result = protocol.interpret_one(function, LM)
  assert "noisy" in result.description
  assert scoring.numeric_score(result.code, function).score == 1


def test_mlp_is_interpolated_unless_told_not_to():
  weights = {"w1": [1.0, -1.0] + [0.0] * 62, "b1": [0.0, 0.0] + [0.0] * 62,
             "w2": [2.0, 3.0] + [0.0] * 62, "b2": [1.0]}
  function = numeric_function("absolute", [2.0, 1.0], variant="mlp", mlp=weights)   # the net is 2relu(x)+3relu(-x)+1
  result = protocol.interpret_one(function, LM)
  assert "MLP" in result.description and scoring.numeric_score(result.code, function).score == 1


@pytest.mark.parametrize("steps", [
    (("add_number_to_string", (3,)),),
    (("remove_whitespace", ()), ("count_character_repetitions", ("N",))),
    (("replace_substring", ("e", "Q")), ("reverse_string", ())),
    (("capitalize_string", ()), ("string_concatenate", ("xYz",))),
    (("get_mid_character_ordinality", ()), ("map_string", (dict(zip("abcdefghijklmnopqrstuvwxyz",
                                                                    "zriaencxuhvopkjsdlgmbqtwyf")),))),
    (("swap_rand", (1, 7)), ("add_order_of_inx1_to_inx2", (4, 2))),
], ids=lambda steps: "+".join(op for op, _ in steps))
def test_string_programs_are_recovered(steps):
  function = strings.StringFunction("f00000", steps)
  entry, = strings.unit_tests([function, strings.StringFunction("f00001", (("reverse_string", ()),))], seed=0)[:1]
  result = protocol.interpret_one(function, LM)
  assert scoring.strings_score(result.code, strings.correct_pairs(entry)).score == 1.0, result.description


def test_pairs_are_parsed_with_known_inputs():
  response = "Response: Function input - output pairs: (a, b) (x, y) (c, (d)) (p, q) \n"
  assert parse_pairs(response, ["a", "x, y) (c", "p"]) == ["b", "(d)", "q"]


def test_neuron_exemplar_descriptions():
  from jaxlab.find import neurons
  from jaxlab.lm import ScriptedLM

  def probs(messages, candidates):
    word = messages[-1]["content"].rsplit("Input: ", 1)[1]
    return {"1": 0.95 if word in ("tennis", "football", "Olympics", "chess") else 0.02, "0": 0.05}
  neuron = neurons.EntityNeuron("f00000", "sport", None, ["chess", "tree"], ScriptedLM(probs=probs))
  result = protocol.interpret_one(neuron, LM, hints=True)
  assert result.description.startswith("The function is most selective for words such as chess (0.95)")
  assert "tennis" in result.description

  def rule(messages):
    word = messages[-1]["content"].rsplit("Input: ", 1)[1]
    return {"Paris": "France", "Tokyo": "Japan"}.get(word, "undefined")
  relation = neurons.RelationNeuron("f00001", "a city", "its country", None, None, ScriptedLM(rule))
  result = protocol.interpret_one(relation, LM)
  assert "Paris -> France" in result.description and "Tokyo" in result.domain
