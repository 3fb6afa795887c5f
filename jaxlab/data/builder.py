"""What jaxlab's TFDS builders share: array_record files, however the build is started.

`tfds build` writes TFRecord files unless given `--file_format`, and TFRecord has no random access, which
grain (`tfds.data_source`) needs. A jaxlab builder writes array_record unless a format is asked for, and
keeps the format of a dataset already prepared.
"""

from pathlib import Path

import tensorflow_datasets as tfds

from jaxlab.data.cli import builder_names
from jaxlab.errors import UserError

FILE_FORMAT = "array_record"


class DatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A `GeneratorBasedBuilder` whose default file format is array_record."""

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    if file_format is None and not self.is_prepared():
      self.info.set_file_format(FILE_FORMAT, override=True)


def open_prepared(name: str, data_dir) -> tuple[dict, "tfds.core.DatasetInfo"]:
  """`(split -> random-access source, info)` of the prepared dataset `name` (`dataset/config`) in `data_dir`.

  When it cannot be read, one line says what `data_dir` holds instead (nothing, an unfinished build, TFRecord
  files) and the command that builds it.
  """
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():  # a builder class this process knows builds no error for a missing dataset
      raise FileNotFoundError("not prepared")
    return builder.as_data_source(), builder.info
  except Exception as e:  # noqa: BLE001 - TFDS raises many types for "not built"; the line below says which
    raise UserError(f"dataset {name} cannot be read from {data_dir}: {_found(name, data_dir, e)}; "
                    f"{_build_command(name, data_dir)}") from None


def _found(name: str, data_dir, error: Exception) -> str:
  folder = Path(data_dir or "~/tensorflow_datasets").expanduser() / name.partition(":")[0]
  if not folder.is_dir():
    return f"{folder} does not exist (not built)"
  tfrecords = sorted(folder.rglob("*.tfrecord-*"))
  if tfrecords:
    return (f"{tfrecords[0].parent} holds TFRecord files ({tfrecords[0].name}, ...), which have no random "
            f"access; jaxlab reads {FILE_FORMAT}")
  if not any(folder.rglob("dataset_info.json")):
    return f"{folder} holds an unfinished build (no dataset_info.json)"
  return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _build_command(name: str, data_dir) -> str:
  dataset, _, config = name.partition(":")[0].partition("/")
  if dataset in builder_names():
    return (f"build it with `jaxlab data build {dataset} --manual-dir M --data-dir {data_dir}"
            + (f" --config {config}`" if config else "`") + f" (or `tfds build datasets/{dataset} ...`, which "
            f"writes {FILE_FORMAT} too)")
  return f"build it with `tfds build {dataset} --data_dir {data_dir} --file_format {FILE_FORMAT} ...`"
