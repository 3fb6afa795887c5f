"""Synthetic neurons behind an LM: a keyword stub for CI, the release's neurons, the exported scripts."""

import math
import os
import subprocess
import sys

import pytest

from jaxlab.find import dataset, neurons
from jaxlab.lm import ScriptedLM

from tests.find.stub_server import StubServer, chat_reply

RELATED = {"sport organizations": {"NFL", "FIFA", "NBA"}, "anime and manga": {"Naruto"}}


def keyword_probs(messages, candidates):
  """An entity 'LM': p('1') = 0.9 if the input is a keyword of a concept named in the prompt, else 0.1."""
  prompt = messages[-1]["content"]
  word = prompt.rsplit("Input: ", 1)[1]
  hit = any(concept in prompt and word in words for concept, words in RELATED.items())
  return {"1": 0.9 if hit else 0.1, "0": 0.1 if hit else 0.9}


def test_entity_neuron_activation_and_output():
  neuron = neurons.EntityNeuron("f00000", "sport organizations", None, None, ScriptedLM(probs=keyword_probs))
  assert neuron("NFL") == pytest.approx(0.9) and neuron("banana") == pytest.approx(0.1)
  assert neuron.run(["NFL", "banana"]) == "Function input - output pairs: (NFL, 0.9000) (banana, 0.1000) "
  polysemantic = neurons.EntityNeuron("f00140", "fictional characters", "anime and manga", None,
                                      ScriptedLM(probs=keyword_probs))
  assert polysemantic("Naruto") == pytest.approx(0.9)
  prompt = polysemantic.messages("x")[1]["content"]
  assert "related to fictional characters" in prompt and "related to anime and manga" in prompt


def test_relation_neuron_applies_the_rule_and_the_exception():
  capitals = {"France": "Paris", "Japan": "Tokyo"}

  def lm(messages):
    prompt = messages[-1]["content"]
    word = prompt.rsplit("Input: ", 1)[1]
    if "in Asia" in prompt and word == "Japan":
      return "undefined"
    return capitals.get(word, "undefined")
  neuron = neurons.RelationNeuron("f00025", "a country", "the capital of that country",
                                  "the input country is in Asia", None, ScriptedLM(lm))
  assert neuron.run(["France", "Japan", "cat"]) == \
      "Function input - output pairs: (France, Paris) (Japan, undefined) (cat, undefined) "
  assert "If the input country is in Asia, return 'undefined'." in neuron.messages("x")[1]["content"]


def test_release_neurons_load(shared_data):
  entities = dataset.load(shared_data / "find", "neurons_entities")
  relations = dataset.load(shared_data / "find", "neurons_relations")
  assert len(entities) == 200 and len(relations) == 75
  assert entities[0].concept1 == "sport organizations" and entities[0].concept2 is None
  assert all(e.concept2 for e in entities[140:]) and not any(e.concept2 for e in entities[:140])
  assert relations[0].name == "f00000" and relations[30].exception == "the input city is in California"
  assert all(r.exception for r in relations[25:]) and not any(r.exception for r in relations[:25])
  assert len(dataset.load_unit_tests(shared_data / "find", "neurons_entities")) == 200


def test_exported_entity_script_queries_an_openai_compatible_endpoint(tmp_path):
  top = [{"token": "1", "logprob": math.log(0.3)}, {"token": "0", "logprob": math.log(0.1)}]
  stub = StubServer(lambda body: chat_reply("1", top))
  neuron = neurons.EntityNeuron("f00000", "sport organizations", None, None)
  # The original tools substitute {API_BASE} with a quoted URL; that must work as well as the variable.
  script = tmp_path / "function.py"
  with stub.running():
    script.write_text(neuron.source().replace("{API_BASE}", f"'{stub.url}'"))
    env = {k: v for k, v in os.environ.items() if k != "FIND_LM_BASE_URL"}
    printed = subprocess.run([sys.executable, str(script), "NFL"], capture_output=True, text=True, env=env,
                             check=True).stdout
  assert printed.strip() == "Function input - output pairs: (NFL, 0.7500)"
  messages = stub.requests[0]["body"]["messages"]
  assert messages == neuron.messages("NFL")


def test_exported_relation_script(tmp_path):
  stub = StubServer(lambda body: chat_reply("Paris"))
  neuron = neurons.RelationNeuron("f00000", "a country", "the capital of that country", None, None)
  script = tmp_path / "function.py"
  script.write_text(neuron.source())
  with stub.running():
    printed = subprocess.run([sys.executable, str(script), "France"], capture_output=True, text=True, check=True,
                             env={**os.environ, "FIND_LM_BASE_URL": stub.url}).stdout
  assert printed.strip() == "Function input - output pairs: (France, Paris)"
  assert stub.requests[0]["body"]["messages"] == neuron.messages("France")
