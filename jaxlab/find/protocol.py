"""The interpreter-agent protocol: an LM runs `PYTHON(path v1 v2 ...)` experiments, then describes f.

One interpretation (FIND `collect_interpretations.interp_func`): system prompt + task prompt; each reply is
searched for the first `PYTHON(...)` command, whose inputs are passed to the function and whose output comes
back as `Response: ...`; a reply containing `[DESCRIPTION]` ends the dialogue; at most 20 replies. A reply
with neither a command nor a description restarts the dialogue from the task prompt, as in the original.
`single_round` (the MILAN-style baseline) ends at the second reply.

Differences from the original, on purpose: inputs may be separated by commas as well as spaces (the original
silently dropped comma-separated inputs), single quotes are accepted, and the inputs never reach a shell:
they are handed to the function as a list of strings.
"""

import ast
import dataclasses
import json
import os
from pathlib import Path
import re
import time
from collections.abc import Callable, Sequence

from jaxlab.errors import UserError
from jaxlab.find import prompts, source
from jaxlab.lm import LM, TransientError

FUNCTION_PATH = "./temp/function.py"
MAX_ROUNDS = 20


@dataclasses.dataclass(frozen=True)
class Command:
  path: str
  args: tuple[str, ...]


def split_arguments(text: str) -> list[str]:
  """Splits a command's arguments like a POSIX shell (quotes group, backslash escapes), with commas outside
  quotes separating too. Raises ValueError on an unclosed quote."""
  tokens, current, quoted, quote, escaped = [], [], False, None, False
  for char in text:
    if escaped:
      current.append(char)
      escaped = False
    elif char == "\\" and quote != "'":
      escaped = True
    elif quote:
      if char == quote:
        quote = None
      else:
        current.append(char)
    elif char in "\"'":
      quote, quoted = char, True
    elif char.isspace() or char == ",":
      if current or quoted:
        tokens.append("".join(current))
      current, quoted = [], False
    else:
      current.append(char)
  if quote:
    raise ValueError("no closing quotation")
  if current or quoted or escaped:
    tokens.append("".join(current) + ("\\" if escaped else ""))
  return tokens


def find_command(reply: str) -> str | None:
  """The argument text of the first `PYTHON(...)` in `reply` (parentheses inside quotes are skipped)."""
  match = re.search(r"PYTHON\(", reply)
  if not match:
    return None
  depth, quote = 1, None
  for i in range(match.end(), len(reply)):
    char = reply[i]
    if quote:
      if char == quote and reply[i - 1] != "\\":
        quote = None
    elif char in "\"'":
      quote = char
    elif char == "(":
      depth += 1
    elif char == ")":
      depth -= 1
      if depth == 0:
        return reply[match.end():i]
  return reply[match.end():]  # an unclosed command: take the rest


def parse_command(text: str) -> Command:
  tokens = split_arguments(text)
  if not tokens:
    raise ValueError("the command names no script")
  return Command(tokens[0], tuple(tokens[1:]))


_TAG = r"\[{}\]\s*:?[ \t]*"


def _after_last(text: str, tag: str) -> str | None:
  matches = list(re.finditer(_TAG.format(tag), text))
  return text[matches[-1].end():] if matches else None


def _cut(text: str, *tags: str) -> str:
  for tag in tags:
    match = re.search(_TAG.format(tag), text)
    if match:
      text = text[:match.start()]
  return text


def parse_description(reply: str) -> str:
  """The text after the last `[DESCRIPTION]:` up to `[DOMAIN]:` or `[CODE]:` (all of it if no tag)."""
  text = _after_last(reply, "DESCRIPTION")
  return _cut(reply if text is None else text, "DOMAIN", "CODE").strip()


def parse_domain(reply: str) -> str:
  text = _after_last(reply, "DOMAIN")
  return "" if text is None else _cut(text, "CODE").strip()


def parse_code(reply: str) -> str:
  """The Python block after the last `[CODE]:` (fenced, or unfenced if it parses and defines a function)."""
  text = _after_last(reply, "CODE")
  if text is None:
    return ""
  fenced = re.search(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|$)", text, re.S)
  if fenced:
    return fenced.group(1).strip() + "\n"
  try:
    tree = ast.parse(text)
  except SyntaxError:
    return ""
  return text.strip() + "\n" if any(isinstance(n, ast.FunctionDef) for n in tree.body) else ""


@dataclasses.dataclass
class Interpretation:
  reply: str                # the final reply ("" if the rounds ran out)
  history: list[dict]
  rounds: int

  @property
  def description(self) -> str:
    return parse_description(self.reply) if self.reply else ""

  @property
  def domain(self) -> str:
    return parse_domain(self.reply)

  @property
  def code(self) -> str:
    return parse_code(self.reply)


def execute(command_text: str, run: Callable[[Sequence[str]], str], path: str) -> str:
  """The `Response: ...` message for one command."""
  try:
    command = parse_command(command_text)
  except ValueError as e:
    return f"Response: Error parsing the command ({e}). Use PYTHON({path} value1 value2 ...)."
  if os.path.normpath(command.path) != os.path.normpath(path) and Path(command.path).name != Path(path).name:
    return f"Response: python: can't open file '{command.path}'. Run PYTHON({path} value1 value2 ...)."
  return "Response: " + run(list(command.args)) + "\n"


def interpret_one(function, lm: LM, *, path: str = FUNCTION_PATH, hints: bool = False, single_round: bool = False,
                  max_rounds: int = MAX_ROUNDS, strict_system: bool = False, temperature: float = 0.0) -> Interpretation:
  """Runs the dialogue for one benchmark function (anything with `prompt`, `initial` and `run(args)`)."""
  initial = function.initial if (hints or single_round) else None
  if (hints or single_round) and not initial:
    raise UserError(f"{function.name}: --hints and --single-round need search-initialisation words "
                    "(initial.json), which only the neuron categories have")
  system = {"role": "system", "content": prompts.system_prompt(strict_system)}
  task = prompts.task_prompt(function.prompt, path, initial)
  history, message = [system], task
  for round_ in range(1, max_rounds + 1):
    history.append({"role": "user", "content": message})
    reply = lm.chat(history, temperature=temperature)
    history.append({"role": "assistant", "content": reply})
    if "[DESCRIPTION]" in reply or (single_round and round_ == 2):
      return Interpretation(reply, history, round_)
    command = find_command(reply)
    if command is None:
      history, message = [system], task
      continue
    message = execute(command, function.run, path)
  return Interpretation("", history, max_rounds)


def run_suffix(hints: bool, single_round: bool) -> str:
  return "_single_round" if single_round else "_hints" if hints else ""


def _write(path: Path, text: str) -> None:
  partial = path.with_name(path.name + ".partial")
  partial.write_text(text)
  partial.replace(path)


def save(interpretation: Interpretation, folder: Path, category: str) -> None:
  """The original's files; `description.txt`, written last, marks the function as done."""
  folder.mkdir(parents=True, exist_ok=True)
  _write(folder / "history.json", json.dumps(interpretation.history, indent=1))
  _write(folder / "history.txt", "".join(f"\n{m['role']}:\n{m['content']}" for m in interpretation.history
                                         if m["role"] != "system"))
  if category in ("numeric", "neurons_entities", "neurons_relations"):
    _write(folder / "domain.txt", interpretation.domain)
  if category in ("numeric", "strings"):
    _write(folder / "code.py", interpretation.code)
  (folder / "error.txt").unlink(missing_ok=True)
  _write(folder / "description.txt", interpretation.description)


def interpret(functions: Sequence, lm: LM, out: str | Path, *, hints: bool = False, single_round: bool = False,
              attempts: int = 3, progress: Callable[[str], None] | None = None, **kwargs) -> dict:
  """Interprets `functions` (one category) into `out/<category>[_hints|_single_round]/fNNNNN/`.

  Resumable: functions whose `description.txt` exists are skipped. A function whose dialogue keeps failing
  gets an `error.txt` and is retried on the next run; when the LM endpoint stays down after its retries, the
  run stops there (a `UserError`), since every other function would wait out the same retries.
  """
  counts = {"done": 0, "skipped": 0, "failed": 0}
  if not functions:
    return counts
  root = Path(out) / (functions[0].category + run_suffix(hints, single_round))
  for function in functions:
    folder = root / function.name
    if (folder / "description.txt").exists():
      counts["skipped"] += 1
      continue
    start, error = time.time(), None
    for _ in range(attempts):
      try:
        with source.seeded(f"interpret/{function.name}"):
          interpretation = interpret_one(function, lm, hints=hints, single_round=single_round, **kwargs)
        break
      except UserError:
        raise
      except TransientError as e:  # the LM is unreachable even after its retries: every function would wait too
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "error.txt", f"{type(e).__name__}: {e}")
        raise UserError(f"{lm.name} did not answer while interpreting {function.name} ({e}), after its retries; "
                        f"start it or check --backend, then rerun: the {counts['done'] + counts['skipped']} "
                        "functions already interpreted are kept") from None
      except Exception as e:  # noqa: BLE001 - a failed dialogue is recorded and retried next run
        error = f"{type(e).__name__}: {e}"
    else:
      folder.mkdir(parents=True, exist_ok=True)
      _write(folder / "error.txt", error)
      counts["failed"] += 1
      continue
    save(interpretation, folder, function.category)
    counts["done"] += 1
    if progress:
      progress(f"{function.category}/{function.name}: {interpretation.rounds} rounds, {time.time() - start:.1f}s")
  return counts
