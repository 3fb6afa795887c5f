"""An interpreter that needs no LM: it speaks the protocol (`chat`), probes the function and fits it.

It is stateless: every `chat` call replays its own earlier experiments from the conversation (the same
seed gives the same probes), feeds it the responses, and either issues the next `PYTHON(...)` command or
writes the `[DESCRIPTION]` / `[DOMAIN]` / `[CODE]` reply. Numeric functions: `offline_numeric`; strings:
`offline_strings`; synthetic neurons: an exemplar description (the words with the highest and lowest
activations, or the input -> output pairs the rule produced), in the spirit of MILAN.
"""

import hashlib
import json
import re
from collections.abc import Sequence

from jaxlab.errors import UserError
from jaxlab.find import offline_numeric, offline_strings, protocol, source

# Words for probing the neurons: varied categories, common and obscure, concrete and abstract.
VOCABULARY = (
    "dog", "cat", "lion", "eagle", "salmon", "oak", "rose", "apple", "bread", "cheese", "coffee", "wine", "car",
    "bicycle", "airplane", "train", "ship", "rocket", "hammer", "violin", "piano", "guitar", "painting",
    "sculpture", "novel", "poem", "opera", "film", "television", "newspaper", "computer", "software", "internet",
    "smartphone", "robot", "electricity", "atom", "galaxy", "planet", "volcano", "river", "mountain", "desert",
    "ocean", "island", "forest", "rain", "snow", "hurricane", "earthquake", "Paris", "Tokyo", "Brazil",
    "Egypt", "Canada", "India", "Berlin", "Mexico", "Australia", "Nile", "Amazon", "Everest", "Sahara",
    "Shakespeare", "Einstein", "Napoleon", "Mozart", "Picasso", "Cleopatra", "Gandhi", "Beyonce", "Messi",
    "football", "tennis", "Olympics", "chess", "marathon", "election", "democracy", "parliament", "war",
    "treaty", "revolution", "bank", "stock market", "money", "tax", "company", "factory", "hospital", "doctor",
    "vaccine", "virus", "DNA", "brain", "heart", "happiness", "fear", "love", "justice", "freedom", "religion",
    "church", "temple", "mathematics", "algebra", "physics", "chemistry", "biology", "history", "philosophy",
    "language", "grammar", "school", "university", "teacher", "child", "family", "wedding", "birthday",
    "music", "jazz", "hip-hop", "anime", "Harry Potter", "Star Wars", "Mickey Mouse", "dragon", "wizard",
    "castle", "pyramid", "bridge", "skyscraper", "museum", "restaurant", "kitchen", "garden", "tree", "stone",
    "gold", "diamond", "iron", "oil", "solar panel", "climate", "pollution", "recycling", "medicine", "insect",
)


def _seed(text: str) -> int:
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _quote(value: str) -> str:
  return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_pairs(response: str, inputs: Sequence[str]) -> list[str]:
  """The outputs in `Response: Function input - output pairs: (a, f(a)) (b, f(b)) ...`, given the inputs."""
  text = response.split(source.PAIRS_PREFIX, 1)[-1].rstrip("\n")
  outputs, position = [], 0
  for i, value in enumerate(inputs):
    head = f"({value}, "
    start = text.find(head, position)
    if start < 0:
      outputs.append("None")
      continue
    start += len(head)
    if i + 1 < len(inputs):
      end = text.find(f") ({inputs[i + 1]}, ", start)
      end = len(text.rstrip()) - 1 if end < 0 else end
    else:
      end = text.rstrip().rfind(")")
    outputs.append(text[start:max(end, start)])
    position = max(end, start)
  return outputs


def _neuron_plan(kind: str, initial: list[str] | None):
  words = list(dict.fromkeys((initial or []) + list(VOCABULARY)))
  outputs = yield words
  if kind == "neurons_entities":
    scored = sorted(zip(words, (offline_numeric.parse_value(o) for o in outputs)), key=lambda p: -p[1] if p[1] == p[1] else 0)
    high = [f"{w} ({v:.2f})" for w, v in scored[:8] if v >= 0.5] or [f"{w} ({v:.2f})" for w, v in scored[:3]]
    low = [w for w, v in scored[-6:]]
    return (f"[DESCRIPTION]: The function is most selective for words such as {', '.join(high)}; it gives "
            f"values close to 0 to words such as {', '.join(low)}.")
  defined = [(w, o.strip()) for w, o in zip(words, outputs) if "undefined" not in o.lower() and o.strip()]
  undefined = [w for w, o in zip(words, outputs) if "undefined" in o.lower()]
  pairs = "; ".join(f"{w} -> {o}" for w, o in defined[:12]) or "none"
  return (f"[DESCRIPTION]: The function maps some inputs to a related word: {pairs}. For other inputs it returns "
          f"'undefined'.\n[DOMAIN]: The rule applies to inputs such as {', '.join(w for w, _ in defined[:8]) or 'none'}"
          f"; it returns 'undefined' for inputs such as {', '.join(undefined[:8]) or 'none'}.")


_KINDS = (("f(x) is implemented by an MLP", "numeric_mlp"), ("takes numerical inputs", "numeric"),
          ("takes string inputs", "strings"), ("value between 0 and 1", "neurons_entities"),
          ("applies a rule to the input word", "neurons_relations"))


class OfflineInterpreter:
  """The protocol's LM side, computed instead of generated. `fallback`: interpolate numeric functions that
  no formula explains."""

  def __init__(self, fallback: bool = True):
    self.fallback = fallback
    self.name = "offline" if fallback else "offline-nofallback"

  def _plan(self, task: str):
    kind = next((k for marker, k in _KINDS if marker in task), None)
    if kind is None:
      raise UserError("the offline interpreter does not recognise this task prompt")
    seed = _seed(task)
    if kind.startswith("numeric"):
      return offline_numeric.plan(seed, mlp=kind == "numeric_mlp", fallback=self.fallback)
    if kind == "strings":
      return offline_strings.plan(seed)
    hint = re.search(r"start with the following words: (\[.*\])", task)
    return _neuron_plan(kind, json.loads(hint.group(1)) if hint else None)

  def chat(self, messages, *, temperature: float = 0.0, max_tokens: int | None = None) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    task = users[0]
    path = re.search(r"PYTHON\((\S+) ", task).group(1) if "PYTHON(" in task else protocol.FUNCTION_PATH
    plan = self._plan(task)
    try:
      inputs = next(plan)
      for response in users[1:]:
        inputs = plan.send(parse_pairs(response, inputs) if response.startswith("Response: ") else [])
    except StopIteration as done:
      return done.value
    formatted = [_quote(v) if isinstance(v, str) else repr(v) for v in inputs]
    return f"COMMAND: PYTHON({path} {' '.join(formatted)})"

  def token_probs(self, messages, candidates):
    raise UserError("the offline interpreter cannot serve as a judge or a neuron; pass an LM backend")
