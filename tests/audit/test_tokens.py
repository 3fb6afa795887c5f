"""The Beam token counter on shards in each corpus's format, and the HEAD/RANDOM samples."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxlab.audit import tokens
from jaxlab.errors import UserError


def _corpora(tmp_path) -> dict[str, str]:
  """Shards of the three corpora in their formats; their token counts are `COUNTS`."""
  c4 = [{"url": "https://www.news.com/a", "text": "one two three"}, {"url": "http://news.com/b?x=1", "text": "four"},
        {"url": "https://blog.org/p", "text": "it's 2024, isn't it?"}]  # \w+: it s 2024 isn t it
  with gzip.open(tmp_path / "c4-0.json.gz", "wt") as f:
    f.writelines(json.dumps(d) + "\n" for d in c4[:2])
  (tmp_path / "c4-1.json").write_text(json.dumps(c4[2]) + "\n")
  pq.write_table(pa.Table.from_pylist([{"url": "https://News.com/x", "content": "a b"},
                                       {"url": "https://shop.net/", "content": "c d e f"}]), tmp_path / "rf.parquet")
  dolma = [{"text": "w1 w2", "source": "cc", "metadata": {"source_domain": "news.com"}},
           {"text": "x y z", "source": "reddit", "metadata": {"subreddit": "python"}},
           {"text": "q", "source": "cc", "metadata": {"url": "https://blog.org/z"}},
           {"text": "paper text here", "source": "s2", "metadata": {}}]
  with gzip.open(tmp_path / "dolma.json.gz", "wt") as f:
    f.writelines(json.dumps(d) + "\n" for d in dolma)
  return {"c4": str(tmp_path / "c4-*"), "rf": str(tmp_path / "rf.parquet"), "dolma": str(tmp_path / "dolma.json.gz")}


COUNTS = {"www.news.com": (4, 2, 2), "www.blog.org": (6, 0, 1), "www.shop.net": (0, 4, 0),
          "www.reddit.com": (0, 0, 3), "www.s2": (0, 0, 3)}


def _rows(out) -> dict[str, tuple]:
  table = tokens.TokenTable.load(out)
  return {d: tuple(table.count(d, c) for c in tokens.CORPORA) for d in table.domains}


def test_count_tokens_pipeline(tmp_path):
  out = tmp_path / "tokens.csv"
  tokens.count_tokens(_corpora(tmp_path), out)
  assert _rows(out) == COUNTS
  assert out.read_text().splitlines()[0] == "url,c4_tokens,rf_tokens,dolma_tokens"


def test_count_tokens_on_several_beam_workers(tmp_path):
  """The pipeline as a cluster runs it: its functions pickled into other processes (DirectRunner workers)."""
  out = tmp_path / "tokens.csv"
  tokens.count_tokens(_corpora(tmp_path), out, ["--runner=DirectRunner", "--direct_num_workers=2",
                                                "--direct_running_mode=multi_processing"])
  assert _rows(out) == COUNTS


def test_loading_merges_www_and_bare_rows(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("url,c4_tokens,rf_tokens,dolma_tokens\napnews.com,14,15,143\nwww.apnews.com,8,19,8\n"
                  "x.org,1,1,1\n")
  table = tokens.TokenTable.load(path)
  assert table.domains == ["www.apnews.com", "www.x.org"]
  assert [table.count("apnews.com", c) for c in tokens.CORPORA] == [22, 34, 151]
  assert table.total("c4") == 23
  assert tokens.TokenTable.load(path, tokens.PAPER_TOTALS).total("c4") == 170_005_451_386


def _table():
  rows = [(f"d{i:02d}.com", 100 - i, (i * 37) % 50, 50 if i % 2 else 0) for i in range(40)]
  return tokens.TokenTable.from_rows(rows)


def test_head_and_head_share():
  table = _table()
  assert table.head("c4", 3) == ["www.d00.com", "www.d01.com", "www.d02.com"]
  assert table.head_share("c4", 3) == pytest.approx((100 + 99 + 98) / sum(100 - i for i in range(40)))
  # Ties break by name: every odd domain has 50 Dolma tokens.
  assert table.head("dolma", 2) == ["www.d01.com", "www.d03.com"]


def test_random_sample_is_reproducible_and_outside_the_heads():
  table = _table()
  heads = set().union(*(table.head(c, 3) for c in tokens.CORPORA))
  first = table.random_sample(5, seed=7, k=3)
  assert first == table.random_sample(5, seed=7, k=3) != table.random_sample(5, seed=8, k=3)
  assert len(first) == 5 and not set(first) & heads
  assert all(table.count(d, "dolma") > 0 and table.count(d, "rf") > 0 for d in first)  # the intersection only
  everyone = table.random_sample(None, seed=0, k=3, require_all_corpora=False)
  assert len(everyone) == 40 - len(heads)


@pytest.mark.parametrize("cell, shown", [("-5", "'-5'"), ("many", "'many'"), ("1.5", "'1.5'"), ("", "''")])
def test_a_count_that_is_no_whole_number_is_refused_with_its_row(tmp_path, cell, shown):
  path = tmp_path / "tokens.csv"
  path.write_text(f"url,c4_tokens,rf_tokens,dolma_tokens\na.com,1,2,3\nb.com,4,{cell},6\n")
  with pytest.raises(UserError, match=rf"tokens.csv: rf_tokens must be a whole number >= 0 .*1 rows are not: "
                                      rf"line 3 \({shown}\)"):
    tokens.TokenTable.load(path)
