"""The paper's sample numbers from its own token file (spec section 1.2), when the shared data has it.

The file is Data-Provenance-Collection's `src/analysis/data/pretrain_data/relevant_url_token_counts.csv`;
place it at `shared/data/consent_crisis/relevant_url_token_counts.csv` to run this test.
"""

import pytest

from jaxlab.audit import tokens


@pytest.fixture(scope="module")
def table(shared_data):
  path = shared_data / "consent_crisis" / "relevant_url_token_counts.csv"
  if not path.is_file():
    pytest.skip(f"{path} not present")
  return tokens.TokenTable.load(path, tokens.PAPER_TOTALS)


def test_head_and_random_counts(table):
  assert len(table) == 13_940  # 13,989 rows before `www.` normalisation
  heads = set().union(*(table.head(c, 2000) for c in tokens.CORPORA))
  assert len(heads) == 3_945
  assert len(table.random_sample(None, 0, 2000, require_all_corpora=False)) == 9_995
  assert len(table.random_sample(None, 0, 2000)) == 9_995  # every random domain is in all three corpora


def test_head_token_shares(table):
  assert [round(100 * table.head_share(c, 2000), 2) for c in tokens.CORPORA] == [10.87, 15.65, 21.78]
  assert table.head("c4", 2)[0] == "www.patents.google.com"
