"""The interpreter's and the judge's prompts, worded as in the FIND protocol so that scores stay comparable."""

import json

COMMAND = "PYTHON(function.py)"
COMMAND_HELP = ("Run a python script with the given file name. Use quotes for the filename argument. Do not use "
                "quotes in the function command itself.")

SYSTEM = (
    "You now have access to some commands to help complete the user's request. You are able to access the "
    "user's machine with these commands. In every message you send, include \"COMMAND: \" with your command at "
    "the end. Here is a list of commands with explanations of how they are used:\n{table}\nWhen you use a "
    "command, the user will respond with \"Response: \" followed by the output of the command. Use this output "
    "to help the user complete their request.")

# The stricter variant the original gives Llama-2 chat models.
SYSTEM_STRICT = SYSTEM + (
    " After you receive a task from the user, you must execute {command} to run the external function. You "
    "will then receive outputs from the external function to analyze. You must only analyze outputs produced "
    "by the function when you run {command}. Do not run the function any other way. Do not analyze any other "
    "outputs besides the ones produced by running {command}.")

_NUMERIC = (
    "Hi, your job is to interpret a function f(x) that is implemented in the {path} script. f(x) takes "
    "numerical inputs.\n"
    "All you can do is call f(x) on a value of x by running PYTHON({path} value).{mlp} \n"
    "Try to describe the function implemented by f(x) by running experiments on it. \n"
    "You can call the function on multiple inputs at a time by running PYTHON({path} value1 value2 value3 ...). \n"
    "You can run the function multiple times on the same input. We encourage testing a large range of values "
    "before writing a description. You can test values between [-128 and 128]. \n"
    "The output could be noisy and your goal is to find a good simple description of f(x) that explains most of "
    "the function behavior. f(x) may combine multiple different operations.\n"
    "There may be an interval inside the domain where the function behaves differently. If that is the case, "
    "describe that interval.\n"
    "Your description of the function should have three parts. \n"
    "First, [DESCRIPTION]: Describe what the function is doing in language. \n"
    "[DOMAIN]: What is the domain of the function? Is there an interval where the function displays unexpected "
    "behavior? What are the numeric bounds of that interval? What is going on there?\n"
    "[CODE]: Write python code that approximates the behavior of the function. ")

TASKS = {
    "numeric": _NUMERIC.replace("{mlp}", ""),
    "numeric_mlp": _NUMERIC.replace("{mlp}", " f(x) is implemented by an MLP."),
    "strings": (
        "Hi, your job is to interpret a function f(x) that is implemented in the {path} script. f(x) takes "
        "string inputs.\n"
        "All you can do is call f(x) on an input string by running PYTHON({path} string). \n"
        "Try to describe the function implemented by f(x) by running experiments on it. \n"
        "You can call the function on multiple inputs at a time by running PYTHON({path} string1 string2 "
        "string3 ...). \n"
        "We encourage testing a large range of inputs before writing a description.\n"
        "The goal is to find a good simple description of f(x) that explains most of the function behavior. "
        "f(x) may combine multiple different operations.\n"
        "Your description of the function should be in the following form.\n"
        "[DESCRIPTION]: Describe what the function is doing in language. \n"
        "[CODE]: Write python code that approximates the behavior of the function. "),
    "neurons_entities": (
        "Hi, your job is to interpret a function f(x) that is implemented in the {path} script. f(x) takes word "
        "inputs and return a value between 0 and 1, where a value closer to 1 indicates association with a "
        "particular concept. \n"
        "Your task is to figure out what that concept is. f(x) may be selective for more than one concept. If "
        "that is the case, describe all concepts that f(x) is selective for. \n"
        "Try to describe the function implemented by f(x) by running experiments on it. We encourage you to test "
        "a diverse and random selection of words: spanning many different categories, including both common and "
        "obscure words, concrete and abstract words.\n"
        "You can call the function on multiple inputs at a time by running PYTHON({path} word1 word2 word3 ...). \n"
        "We encourage running many tests before writing a description.\n"
        "The goal is to find a good simple description of f(x) that explains most of the function behavior.\n"
        "Your description of the function should be in the following form.\n"
        "[DESCRIPTION]: Describe what the function is doing in language. "),
    "neurons_relations": (
        "Hi, your job is to interpret a function f(x) that is implemented in the {path} script. f(x) takes word "
        "inputs, and applies a rule to the input word. \n"
        "Try to describe the rule implemented by f(x) by running experiments on it. We encourage you to test a "
        "diverse selection of words spanning real-world concepts like places, events, and people.\n"
        "You can call the function on multiple inputs at a time by running PYTHON({path} word1 word2 word3 ...). \n"
        "We encourage running many tests before writing a description.\n"
        "The goal is to find a good simple description of f(x) that explains most of the function behavior. "
        "There may be some inputs where you expect the function to behave a certain way, but it does not. If "
        "that is the case, describe the part of the domain where the rule the function normally applies, does "
        "not hold. \n"
        "Your description of the function should have two parts. \n"
        "[DESCRIPTION]: Describe in language the rule applied by the function.\n"
        "[DOMAIN]: Is there part of the domain where the rule the function normally applies, does not hold? If "
        "so, describe that corruption. If not, describe the domain of the function where the rule applies."),
}

HINTS = "\nWe advise you to start with the following words: {initial}"

JUDGE_SYSTEM = (
    "You are a helpful assistant. You indicate which of the input-output mapping examples provided by the user "
    "is a possible execution of the function provided by the user. Answer with only the following format: "
    "'[ANSWER]: <index>' where <index> represent the numerical value of the correct example. Do not include any "
    "additional information in the answer.")

_JUDGE_TAIL = (
    "Reply in the following format: \n"
    "\"[ANSWER]: <index>\", where <index> represents the numerical value of the correct example.\n"
    "Only include the numerical index of the example.\n")

JUDGE_PAIRS = (
    "Below is a textual description of a function f(x):\n{description}\n"
    "Which one of the following pairs of input-output strings are correct executions of f(x)?\n"
    "{examples}" + _JUDGE_TAIL)

JUDGE_ENTITIES = (
    "Below is a textual description of a function f(x), which is selective for a specific concept:\n"
    "{description}\n"
    "Which one of the following input examples will the function be most selective for? \n"
    "{examples}" + _JUDGE_TAIL)


def system_prompt(strict: bool = False) -> str:
  table = f"{COMMAND} - {COMMAND_HELP}\n"
  return (SYSTEM_STRICT if strict else SYSTEM).format(table=table, command=table.strip())


def task_prompt(kind: str, path: str, initial: list[str] | None = None) -> str:
  """The task for prompt kind `kind`; `initial` (search-initialisation words) appends the hint."""
  text = TASKS[kind].format(path=path)
  if initial is not None:
    text += HINTS.format(initial=json.dumps(initial))
  return text


def judge_prompt(category: str, description: str, inputs, outputs=None) -> str:
  if category == "neurons_entities":
    examples = "".join(f"Example {i + 1}: input = {x}\n" for i, x in enumerate(inputs))
    return JUDGE_ENTITIES.format(description=description, examples=examples)
  examples = "".join(f"Example {i + 1}: input = {x}, output = {y}\n" for i, (x, y) in enumerate(zip(inputs, outputs)))
  return JUDGE_PAIRS.format(description=description, examples=examples)
