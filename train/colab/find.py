# Source of find.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # FIND: describing functions by experimenting on them
#
# Schwettmann et al., NeurIPS 2023: a benchmark of black-box functions (numeric, string, and LM-backed synthetic
# neurons) that an interpreter agent probes with `PYTHON(...)` calls and then describes in words and code; the
# code is scored against the true function in a sandbox. This notebook generates a small benchmark, runs the
# offline interpreter (no LM: it fits the numeric families and searches compositions of string operations),
# scores it and shows one function with its interpretation. An LM backend plugs in at the same place.
# About a minute on a 2-core CPU runtime.

# %% parameters
WORKDIR = "runs/colab/find"
N_NUMERIC, N_STRINGS = 20, 20  # functions per category (the released benchmark: 1000 each)
MLP_EPOCHS = 500               # the MLP variants' training (the recipe: 10,000)

# %%
from pathlib import Path

from jaxlab import notebook
from jaxlab.find import cli, dataset, protocol, scoring
from jaxlab.find.offline import OfflineInterpreter

workdir = Path(WORKDIR)
data, results = workdir / "benchmark", workdir / "results"

# %% [markdown]
# ## Build a benchmark in the release's layout
# `fNNNNN/function_code.py` holds the hidden function; the interpreter only calls it.

# %%
print(cli.build(data, n_numeric=N_NUMERIC, n_strings=N_STRINGS, seed=0, mlp_epochs=MLP_EPOCHS,
                categories=("numeric", "strings")))
print((data / "numeric" / "f00000" / "function_code.py").read_text())

# %% [markdown]
# ## Interpret and score
# Results go to `results/<category>/fNNNNN/` (`history.json`, `description.txt`, `code.py`); scoring runs each
# interpretation's code in the sandbox against the true function.

# %%
interpreter = OfflineInterpreter()
for category in ("numeric", "strings"):
  protocol.interpret(dataset.load(data, category), interpreter, results)
summaries = scoring.score_run(data, results)
notebook.show_markdown(scoring.table(summaries))

# %%
example = results / "numeric" / "f00000"
print((example / "description.txt").read_text())
print((example / "code.py").read_text())

# %% [markdown]
# ## Your interpreter and the released benchmark
# Any OpenAI-compatible endpoint (hosted, vLLM, llama.cpp; key in `OPENAI_API_KEY`) or a local transformers
# model interprets through the same protocol, from the command line:
#
# ```
# jaxlab find build --out runs/find/release --release FIND/src/find-dataset --strings 0
# jaxlab find interpret --dataset runs/find/release --category strings --out runs/find/gpt --backend openai:gpt-4o
# jaxlab find score --dataset runs/find/release --results runs/find/gpt --judge openai:MODEL@URL
# ```

# %%
RELEASE_DIR = ""   # the released FIND dataset folder (FIND/src/find-dataset)
if RELEASE_DIR:
  print(cli.build(workdir / "release", release=RELEASE_DIR, n_strings=0))
else:
  print("set RELEASE_DIR to rebuild the released benchmark")
