"""The command line: config loading and overrides, and one-line user errors."""

import pytest

from jaxlab import cli
from jaxlab.errors import UserError
from jaxlab.training import config as config_lib


def test_overrides_keep_the_field_types():
  c = config_lib.load_config("train/configs/airletters.py:tiny",
                             ["lr=1", "total_steps=7", "mesh.data=4", "dataset=airletters/x", "crop_scale=[0.5,1]",
                              "pretrained=/some/path"])
  assert c.lr == 1.0 and isinstance(c.lr, float)
  assert c.total_steps == 7 and c.mesh.data == 4 and c.dataset == "airletters/x"
  assert c.crop_scale == (0.5, 1.0) and c.pretrained == "/some/path"
  with pytest.raises(UserError, match="no field 'lrr'"):
    config_lib.load_config("train/configs/airletters.py:tiny", ["lrr=1"])
  with pytest.raises(UserError, match="key=value"):
    config_lib.load_config("train/configs/airletters.py:tiny", ["lr"])
  with pytest.raises(UserError):
    config_lib.load_config("train/configs/airletters.py:tiny", ["total_steps=abc"])


def test_packaged_config_shorthand_is_the_file():
  assert config_lib.load_config("airletters:tiny_cnn") == config_lib.load_config("train/configs/airletters.py:tiny_cnn")
  assert {"airletters", "esd", "something_else", "spelling"} <= set(config_lib.config_names())


def test_split_overrides_accepts_both_spellings():
  rest, overrides = cli._split_config_overrides(["train", "m", "--config.a=1", "--config.b", "2", "--workdir", "w"])
  assert rest == ["train", "m", "--workdir", "w"] and overrides == ["a=1", "b=2"]


@pytest.mark.parametrize("argv, message", [
    (["train", "airletters", "--config", "nope.py:tiny", "--workdir", "w"], "config file nope.py not found"),
    (["train", "nomethod", "--config", "x.py", "--workdir", "w"], "unknown method 'nomethod'"),
    (["train", "airletters", "--config", "train/configs/airletters.py:huge", "--workdir", "w"], "unknown variant"),
    (["train", "airletters", "--config", "airletters:huge", "--workdir", "w"], "unknown variant"),
    (["train", "airletters", "--config", "airleters:tiny", "--workdir", "w"], "no config named 'airleters'"),
    (["eval", "airletters", "--workdir", "/nonexistent/run"], "holds no config.json"),
    (["bench", "nomodel"], "no benchmark for 'nomodel'"),
    (["demo", "--config.lr=1"], "apply to train and eval"),
])
def test_user_errors_end_in_one_line(capsys, argv, message):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0] and err[0].startswith("jaxlab: error:")
