"""The interpreter protocol: command parsing, the dialogue loop, reply parsing, saving and resuming."""

import json

import pytest

from jaxlab.errors import UserError
from jaxlab.find import protocol, strings
from jaxlab.lm import ScriptedLM, TransientError

PATH = protocol.FUNCTION_PATH


class Echo:
  """A benchmark function that records its inputs and returns them reversed."""
  category, prompt, initial, name = "strings", "strings", None, "f00000"

  def __init__(self):
    self.calls = []

  def run(self, args):
    self.calls.append(list(args))
    return "Function input - output pairs: " + "".join(f"({a}, {a[::-1]}) " for a in args)


@pytest.mark.parametrize("text, expected", [
    ("./f.py 1 2 3", ["./f.py", "1", "2", "3"]),
    ("./f.py, 1, 2,3", ["./f.py", "1", "2", "3"]),
    ('./f.py "a,b" "hello world" "" x', ["./f.py", "a,b", "hello world", "", "x"]),
    ("./f.py 'it''s' -1.5e3", ["./f.py", "its", "-1.5e3"]),
    (r'./f.py a\"b "c\"d"', ["./f.py", 'a"b', 'c"d']),
    ("./f.py $(rm -rf /) ;ls|cat", ["./f.py", "$(rm", "-rf", "/)", ";ls|cat"]),
])
def test_arguments_split_like_a_shell_with_commas(text, expected):
  assert protocol.split_arguments(text) == expected


def test_unclosed_quote_is_reported_to_the_agent():
  assert "Error parsing" in protocol.execute('./temp/function.py "abc', Echo().run, PATH)


def test_find_command():
  assert protocol.find_command("Let me try.\nCOMMAND: PYTHON(./temp/function.py \"a)b\" 2) and more") == \
      './temp/function.py "a)b" 2'
  assert protocol.find_command("The function looks like ReLU(x).") is None


def test_reply_parsing():
  reply = ("[DESCRIPTION]: draft\n[DESCRIPTION]: adds one.\n[DOMAIN]: all reals; between 3 and 4 it is 0.\n"
           "[CODE]:\n```python\ndef f(x):\n  return x + 1\n```\nDone.")
  assert protocol.parse_description(reply) == "adds one."
  assert protocol.parse_domain(reply) == "all reals; between 3 and 4 it is 0."
  assert protocol.parse_code(reply) == "def f(x):\n  return x + 1\n"
  assert protocol.parse_code("[CODE]: def f(x):\n  return 2*x") == "def f(x):\n  return 2*x\n"
  assert protocol.parse_code("[CODE]: see above") == ""
  assert protocol.parse_description("no tags at all") == "no tags at all"


def test_dialogue_runs_commands_restarts_and_stops_on_a_description():
  function = Echo()
  lm = ScriptedLM([f"COMMAND: PYTHON({PATH}, abc, de)",         # comma-separated inputs are kept
                   "I am thinking.",                            # no command: the dialogue restarts
                   f"PYTHON({PATH} \"$(touch /tmp/x)\" 'q r')",  # inputs never reach a shell
                   "[DESCRIPTION]: reverses the string.\n[CODE]:\n```python\ndef f(s):\n  return s[::-1]\n```"])
  result = protocol.interpret_one(function, lm)
  assert function.calls == [["abc", "de"], ["$(touch /tmp/x)", "q r"]]
  assert result.rounds == 4 and result.description == "reverses the string."
  assert [len(messages) for messages in lm.calls] == [2, 4, 2, 4]   # the third call starts afresh
  assert lm.calls[1][-1]["content"].startswith("Response: Function input - output pairs: (abc, cba) (de, ed)")


def test_dialogue_limits():
  endless = ScriptedLM(lambda messages: f"PYTHON({PATH} a)")
  result = protocol.interpret_one(Echo(), endless)
  assert result.rounds == 20 and result.reply == "" and len(endless.calls) == 20
  neuron = Echo()
  neuron.initial = ["apple", "car"]
  lm = ScriptedLM([f"PYTHON({PATH} apple car)", "It likes fruit."])
  result = protocol.interpret_one(neuron, lm, single_round=True)
  assert result.rounds == 2 and result.description == "It likes fruit."
  assert 'start with the following words: ["apple", "car"]' in lm.calls[0][1]["content"]
  with pytest.raises(UserError):
    protocol.interpret_one(Echo(), lm, hints=True)


def test_unknown_script_is_refused():
  assert "can't open file" in protocol.execute("/etc/passwd 1", Echo().run, PATH)


def test_interpret_saves_and_resumes(tmp_path):
  functions = [strings.StringFunction(f"f0000{i}", (("reverse_string", ()),)) for i in range(3)]
  answer = "[DESCRIPTION]: reverses.\n[CODE]:\n```python\ndef f(s):\n  return s[::-1]\n```"

  def chat(messages):
    return answer
  counts = protocol.interpret(functions, ScriptedLM(chat), tmp_path)
  assert counts == {"done": 3, "skipped": 0, "failed": 0}
  folder = tmp_path / "strings" / "f00001"
  assert (folder / "description.txt").read_text() == "reverses."
  assert (folder / "code.py").read_text().startswith("def f(s)")
  history = json.loads((folder / "history.json").read_text())
  assert [m["role"] for m in history] == ["system", "user", "assistant"]
  assert protocol.interpret(functions, ScriptedLM([]), tmp_path) == {"done": 0, "skipped": 3, "failed": 0}


def test_a_failing_endpoint_is_recorded_and_retried_next_run(tmp_path):
  functions = [strings.StringFunction("f00000", (("reverse_string", ()),))]

  def down(messages):
    raise TransientError("HTTP 503")
  with pytest.raises(UserError, match=r"did not answer while interpreting f00000 \(HTTP 503\)"):
    protocol.interpret(functions, ScriptedLM(down), tmp_path, attempts=2)
  assert "503" in (tmp_path / "strings" / "f00000" / "error.txt").read_text()
  counts = protocol.interpret(functions, ScriptedLM(["[DESCRIPTION]: reverses."]), tmp_path)
  assert counts["done"] == 1 and not (tmp_path / "strings" / "f00000" / "error.txt").exists()
