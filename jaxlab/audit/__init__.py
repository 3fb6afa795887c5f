"""Consent in Crisis (Longpre et al., NeurIPS 2024): the robots.txt and Terms-of-Service audit of C4,
RefinedWeb and Dolma.

  tokens     \\w+ tokens per domain (Apache Beam), HEAD and RANDOM samples
  wayback    CDX listings and raw replays, rate-limited, with retries; wayback_server plays it locally
  crawl      the resumable crawl folder and its export to the spec's JSONs
  robots     the RFC 9309 parser, the paper's classification, the paper-time parser
  agents     the tracked agents and organisations, statuses per snapshot and month
  text, tos  page text, the three ToS taxonomies, LM and keyword labellers, the per-domain merge
  temporal   months, carry-forward, presence by start date
  estimates  token-weighted restricted shares, bootstrap intervals, the robots-vs-ToS matrix
  forecast   SARIMA forecasts
  figures, report   the paper's figures and tables
  synthetic, demo   a synthetic web for the demo and tests
  cli        `jaxlab audit ...`
"""
