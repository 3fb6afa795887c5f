"""What every builder shares: array_record however the build is started, configs by name or JSON, and a
trainer's message that says what it found in the data dir instead of a readable dataset."""

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import file_adapters

from jaxlab import cli
from jaxlab.data import airletters, airletters_synth
from jaxlab.data import cli as data_cli
from jaxlab.data.builder import open_prepared
from jaxlab.errors import UserError

ARRAY_RECORD, TFRECORD = file_adapters.FileFormat.ARRAY_RECORD, file_adapters.FileFormat.TFRECORD


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("airletters")
  airletters_synth.write_dataset(root, {"train": 1, "validation": 1, "test": 1}, labels=airletters.LABELS[:2],
                                 workers=1)
  return root


@pytest.mark.parametrize("name", ["airletters", "something_else", "web_consent"])
def test_builders_write_array_record_unless_asked_otherwise(tmp_path, name):
  builder_cls = data_cli.load_builder_class(name)
  # `tfds build datasets/NAME --manual_dir M` constructs the builder without a file format.
  assert builder_cls(data_dir=str(tmp_path)).info.file_format == ARRAY_RECORD
  assert builder_cls(data_dir=str(tmp_path), file_format="tfrecord").info.file_format == TFRECORD


def _as_tfrecord_build(folder):
  """The layout `tfds build --file_format tfrecord` leaves (file names, dataset_info.json's format), made from
  an array_record build: writing real TFRecords would import TensorFlow, 10 s of the test budget."""
  for f in folder.glob("*.array_record-*"):
    f.rename(f.with_name(f.name.replace(".array_record-", ".tfrecord-")))
  info = folder / "dataset_info.json"
  info.write_text(info.read_text().replace('"fileFormat": "array_record"', '"fileFormat": "tfrecord"'))


def test_a_tfrecord_build_is_named_with_how_to_rebuild(release, tmp_path):
  builder_cls = data_cli.load_builder_class("airletters")
  _as_tfrecord_build(data_cli.build("airletters", release, tmp_path, "fps15_short48"))
  with pytest.raises(UserError, match=r"fps15_short48/1.0.0 holds TFRecord files \(airletters-test.tfrecord-00000"
                                      r"-of-00001, ...\), which have no random access; jaxlab reads array_record; "
                                      r"build it with `jaxlab data build airletters --manual-dir M --data-dir "
                                      rf"{tmp_path} --config fps15_short48`"):
    open_prepared("airletters/fps15_short48", str(tmp_path))
  # The same builder, asked for nothing, keeps the format of the dataset it finds.
  assert builder_cls(config="fps15_short48", data_dir=str(tmp_path)).info.file_format == TFRECORD


@pytest.mark.parametrize("contents, found", [
    ({}, r"airletters/fps15_short48 does not exist \(not built\)"),
    ({"airletters/fps15_short48/1.0.0/airletters-train.array_record-00000-of-00001": b""},
     r"airletters/fps15_short48 holds an unfinished build \(no dataset_info.json\)"),
])
def test_what_the_data_dir_holds_is_said(tmp_path, contents, found):
  for name, data in contents.items():
    (tmp_path / name).parent.mkdir(parents=True)
    (tmp_path / name).write_bytes(data)
  with pytest.raises(UserError, match=found):
    open_prepared("airletters/fps15_short48", str(tmp_path))


def test_the_readmes_strict_build_runs(release, tmp_path, capsys):
  config = '{"name": "strict", "fps": 15, "short_side": 128, "on_bad_video": "fail"}'  # README, AirLetters
  assert cli.main(["data", "build", "airletters", "--manual-dir", str(release), "--data-dir", str(tmp_path),
                   "--config", config]) == 0
  assert "built" in capsys.readouterr().out
  source = tfds.data_source("airletters/strict", data_dir=str(tmp_path))
  assert len(source["train"]) == 2 and min(source["train"][0]["height"], source["train"][0]["width"]) == 128


@pytest.mark.parametrize("config, message", [
    ("fps99", "airletters has no config 'fps99'; its configs: fps15_short128, fps30_short256, fps15_short48 (or"),
    ('{"name": "x", "fsp": 15}', "--config must be a JSON object with a \"name\" and fields of AirLettersConfig "
                                 "(name, version, "),
    ('{"name": "x",', "--config '{\"name\": \"x\",' is not valid JSON"),
])
def test_a_wrong_config_is_one_line(release, tmp_path, capsys, config, message):
  assert cli.main(["data", "build", "airletters", "--manual-dir", str(release), "--data-dir", str(tmp_path),
                   "--config", config]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err
