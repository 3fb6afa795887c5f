# Source of audit.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # Consent in Crisis: the robots.txt and Terms-of-Service audit
#
# Longpre et al., NeurIPS 2024: how much of C4, RefinedWeb and Dolma is now restricted for AI crawlers, from
# monthly Wayback snapshots of each domain's robots.txt and Terms of Service, weighted by the domain's tokens.
# This notebook runs the whole audit offline on a synthetic web: corpus shards -> Beam token counts -> HEAD and
# RANDOM samples -> a crawl of a local Wayback emulator that injects faults -> robots.txt statuses -> keyword
# ToS labels -> restricted-token estimates with bootstrap intervals, SARIMA forecasts and the paper's figures.
# The synthetic web knows the truth, so the estimate is checked against it. About 2 minutes on a 2-core CPU.

# %% parameters
WORKDIR = "runs/colab/audit"
N_SITES = 1500     # domains of the synthetic web (the demo's)
RESAMPLES = 200    # bootstrap resamples of the RANDOM domains

# %%
from pathlib import Path

from jaxlab import notebook
from jaxlab.audit import demo, robots

workdir = Path(WORKDIR)

# %%
section = demo.demo(workdir, n_sites=N_SITES, resamples=RESAMPLES)
notebook.show_markdown(section.markdown)

# %% [markdown]
# ## The figures

# %%
notebook.show(*[f for f in section.files if f.suffix == ".png"], width=700)

# %% [markdown]
# ## One robots.txt, by RFC 9309 and by the paper-time parser

# %%
text = "User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n"
for agent in ("GPTBot", "CCBot", "Googlebot"):
  print(agent, robots.classify(text, agent), robots.classify(text, agent, paper_compat=True),
        robots.parse(text).allowed(agent, "/news/"))

# %% [markdown]
# ## The real audit
# One `jaxlab audit` verb per step (each resumable; `jaxlab audit STEP --help` lists its flags). The corpora:
# C4 `en/*.json.gz`, RefinedWeb `*.parquet`, Dolma `*.json.gz`; the crawl needs the network (Wayback Machine).
#
# ```
# jaxlab audit tokens --c4 'c4/en/*.json.gz' --rf 'refinedweb/*.parquet' --dolma 'dolma/*.json.gz' --out tokens.csv
# jaxlab audit sample --tokens tokens.csv --head-k 2000 --random-n 10000 --seed 0 --out sample
# jaxlab audit crawl --domains sample/domains.csv --out crawl --rate 2
# jaxlab audit label --crawl crawl --labeller keyword        # or openai:gpt-4o, local:/models/x
# jaxlab audit report --crawl crawl --tokens tokens.csv --random sample/random.txt --out report
# ```

# %%
CRAWL_DIR, TOKENS_CSV, RANDOM_TXT = "", "", ""   # outputs of the crawl, tokens and sample steps
if CRAWL_DIR and TOKENS_CSV and RANDOM_TXT:
  import subprocess
  subprocess.run(["jaxlab", "audit", "report", "--crawl", CRAWL_DIR, "--tokens", TOKENS_CSV, "--random", RANDOM_TXT,
                  "--out", str(workdir / "report_real")], check=True)
else:
  print("set CRAWL_DIR, TOKENS_CSV and RANDOM_TXT to report on a real crawl")
