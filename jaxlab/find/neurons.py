"""FIND's synthetic neurons: modules whose behaviour is an LM prompted with a concept or a rule.

Entity neurons (200): the activation for a word is p("1") / (p("0") + p("1")) at the first answer token of
an LM asked whether the word is related to a concept (two concepts, OR-ed, for f00140-f00199).
Relation neurons (75): the LM's text when asked to apply a rule (country -> capital, ...), 50 of them with
an exception for which it must answer 'undefined'.

In-process the LM is any `jaxlab.lm.LM`; the exported `function_code.py` calls an OpenAI-compatible
endpoint (FIND_LM_BASE_URL / FIND_LM_MODEL, or the original tools' `{API_BASE}` substitution) and, for
entities, needs it to return `logprobs`.
"""

import dataclasses
import inspect
from collections.abc import Sequence

from jaxlab.find import source
from jaxlab.lm import LM

ENTITY_SYSTEM = "You are an AI trained to identify words related to input concepts."
RELATION_SYSTEM = ("You are a helpful assistant. You apply real-world knowledge to map input words to output "
                   "words according to a rule provided by the user. Try to be as precise as possible. Do not "
                   "include additional explanation.")


def entity_prompt(concept1: str, concept2: str | None, word: str) -> str:
  rule = f"Return only \"1\" if that input is related to {concept1}. "
  if concept2:
    rule += f"Return only \"1\" if that input is related to {concept2}. "
  return (f"I am going to give you an input. {rule}Return only \"0\" otherwise.\n"
          f"Do not return any additional information other than the 0 or 1 answer.\nInput: {word}")


def relation_prompt(concept1: str, concept2: str, exception: str | None, word: str) -> str:
  rule = f"If the input is {concept1}, reply with only {concept2}. If the input is not {concept1}, return 'undefined'."
  if exception:
    rule += f" If {exception}, return 'undefined'."
  return (f"I am going to give you an input. {rule}\n"
          f"Do not include any additional information other than the output.\nInput: {word}")


_CLIENT = '''
# The original tools substitute {API_BASE} with a quoted URL; otherwise set FIND_LM_BASE_URL.
_SUBSTITUTED = "{API_BASE}".strip("'\\"")
API_BASE = os.environ.get("FIND_LM_BASE_URL") or ("" if _SUBSTITUTED.startswith("{") else _SUBSTITUTED)
MODEL = os.environ.get("FIND_LM_MODEL", "vicuna-13b-v1.1")


def _complete(messages, **extra):
  body = {"model": MODEL, "messages": messages, "temperature": 0.0, **extra}
  request = urllib.request.Request(API_BASE.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(request, timeout=120) as response:
    return json.loads(response.read().decode())["choices"][0]
'''

_ENTITY_FUNCTION = '''
def function(word):
  messages = [{"role": "system", "content": SYSTEM},
              {"role": "user", "content": entity_prompt(CONCEPT1, CONCEPT2, word)}]
  choice = _complete(messages, max_tokens=1, logprobs=True, top_logprobs=20)
  probs = {"0": 0.0, "1": 0.0}
  for item in choice["logprobs"]["content"][0]["top_logprobs"]:
    if item["token"].strip() in probs:
      probs[item["token"].strip()] += math.exp(item["logprob"])
  total = probs["0"] + probs["1"]
  return probs["1"] / total if total > 0 else 0.5
'''

_RELATION_FUNCTION = '''
def function(word):
  messages = [{"role": "system", "content": SYSTEM},
              {"role": "user", "content": relation_prompt(CONCEPT1, CONCEPT2, EXCEPTION, word)}]
  return _complete(messages)["message"]["content"]
'''


def _script(parts: list[str], output: str) -> str:
  return source.script("\n\n\n".join(part.strip() for part in parts), output=output,
                       imports=("import json", "import math", "import os", "import urllib.request"))


@dataclasses.dataclass
class EntityNeuron:
  name: str
  concept1: str
  concept2: str | None
  initial: list[str] | None
  lm: LM | None = None

  category = "neurons_entities"
  prompt = "neurons_entities"

  def messages(self, word: str) -> list[dict]:
    return [{"role": "system", "content": ENTITY_SYSTEM},
            {"role": "user", "content": entity_prompt(self.concept1, self.concept2, word)}]

  def __call__(self, word: str) -> float:
    return float(self.lm.token_probs(self.messages(word), ("0", "1"))["1"])

  def run(self, args: Sequence[str]) -> str:
    return source.PAIRS_PREFIX + "".join(f"({arg}, {self(arg):.4f}) " for arg in args)

  def describe(self) -> str:
    concepts = self.concept1 + (f" or {self.concept2}" if self.concept2 else "")
    return f"The function is selective for inputs related to {concepts}."

  def source(self) -> str:
    constants = f"SYSTEM = {ENTITY_SYSTEM!r}\nCONCEPT1 = {self.concept1!r}\nCONCEPT2 = {self.concept2!r}"
    return _script([_CLIENT, inspect.getsource(entity_prompt), constants, _ENTITY_FUNCTION], "f'{function(arg):.4f}'")

  def metadata(self) -> dict:
    return {"dir": self.name, "concept1": self.concept1, "concept2": self.concept2, "initial": self.initial}


@dataclasses.dataclass
class RelationNeuron:
  name: str
  concept1: str
  concept2: str
  exception: str | None
  initial: list[str] | None
  lm: LM | None = None

  category = "neurons_relations"
  prompt = "neurons_relations"

  def messages(self, word: str) -> list[dict]:
    return [{"role": "system", "content": RELATION_SYSTEM},
            {"role": "user", "content": relation_prompt(self.concept1, self.concept2, self.exception, word)}]

  def __call__(self, word: str) -> str:
    return self.lm.chat(self.messages(word), temperature=0.0)

  def run(self, args: Sequence[str]) -> str:
    return source.PAIRS_PREFIX + "".join(f"({arg}, {self(arg)}) " for arg in args)

  def describe(self) -> str:
    text = f"If the input is {self.concept1}, the function returns {self.concept2}; otherwise 'undefined'."
    return text + (f" Exception: if {self.exception}, it returns 'undefined'." if self.exception else "")

  def source(self) -> str:
    constants = (f"SYSTEM = {RELATION_SYSTEM!r}\nCONCEPT1 = {self.concept1!r}\nCONCEPT2 = {self.concept2!r}\n"
                 f"EXCEPTION = {self.exception!r}")
    return _script([_CLIENT, inspect.getsource(relation_prompt), constants, _RELATION_FUNCTION], "function(arg)")

  def metadata(self) -> dict:
    return {"dir": self.name, "concept1": self.concept1, "concept2": self.concept2, "exeption": self.exception,
            "initial": self.initial}


def from_metadata(category: str, entry: dict, lm: LM | None = None):
  """A neuron from a `neurons_*/data.json` entry (the release's `dir` may be a full path)."""
  name = entry["dir"].rstrip("/").rsplit("/", 1)[-1]
  if category == "neurons_entities":
    return EntityNeuron(name, entry["concept1"], entry.get("concept2"), entry.get("initial"), lm)
  return RelationNeuron(name, entry["concept1"], entry["concept2"], entry.get("exeption"), entry.get("initial"), lm)


