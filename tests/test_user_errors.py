"""Plain mistakes a new user makes, verb by verb: each ends in exit code 2 and one line on stderr that says what
is wrong and what to do, never a traceback. Run in-process (`cli.main`) on tiny files made here."""

import json
import re
import shutil

import pytest

from jaxlab import cli, training
from jaxlab.data import something_else as se

AIRLETTERS = ["--config", "train/configs/airletters.py:tiny"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Every wrong input the table below refers to, as `$name` -> path."""
  root = tmp_path_factory.mktemp("mistakes")
  (root / "afile").write_text("hello")
  (root / "model.pt").write_bytes(b"\x80\x02not a tensor file")
  (root / "bad.py").write_text("def get_config(\n")
  esd = training.load_config("train/configs/esd.py:tiny")
  training.save_config(esd, root / "esd_run")
  (root / "clip_text").mkdir()
  (root / "clip_text" / "config.json").write_text(json.dumps({"architectures": ["CLIPTextModel"]}))
  (root / "vae").mkdir()
  (root / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
  from jaxlab.models import video_vit, weights
  module = video_vit.VideoViTClassifier(video_vit.VideoViTConfig(
      image_size=16, patch_size=8, num_frames=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
      intermediate_size=32, num_labels=38))
  (root / "videomae_truncated").mkdir()
  config = weights.family_for("VideoMAEForVideoClassification").to_config(module)
  (root / "videomae_truncated" / "config.json").write_text(json.dumps(config))
  (root / "videomae_truncated" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
  shutil.copytree(root / "videomae_truncated", root / "videomae_badcfg")
  (root / "videomae_badcfg" / "config.json").write_text('{"architectures": ["VideoMAEForVideoClassification"],')
  (root / "dup.csv").write_text("prompt,evaluation_seed,case_number\na cat,1,3\na dog,2,3\n")
  (root / "few.csv").write_text("prompt,evaluation_seed,case_number\na cat,1\n")
  (root / "robots_bad.json").write_text('{"a.com": {"2024-01-01": "User-agent: *"')
  (root / "robots_list.json").write_text('["User-agent: *"]')
  (root / "tokens_neg.csv").write_text("url,c4_tokens,rf_tokens,dolma_tokens\na.com,1,2,3\nb.com,-4,2,3\n")
  # An AirLetters folder whose train.csv has a row with too few fields.
  al = root / "airletters"
  (al / "videos").mkdir(parents=True)
  header = "id,filename,label,worker_id,video_duration\n"
  (al / "train.csv").write_text(header + "30,00000030.mp4\n")
  (al / "val.csv").write_text(header)
  (al / "test.csv").write_text(header)
  # A Something-Else download without box part 3.
  smth = root / "smth"
  splits = smth / se.SPLITS_DIR / "compositional"
  splits.mkdir(parents=True)
  for name in ("train.json", "validation.json"):
    (splits / name).write_text("[]")
  (splits / "labels.json").write_text('{"Holding something": "0"}')
  for i in (1, 2, 4):
    (smth / f"bounding_box_smthsmth_part{i}.json").write_text("{}")
  # A FIND benchmark of two string functions, one copy without its unit tests, and interpretations to score.
  from jaxlab.find import cli as find_cli
  find_cli.build(root / "find", n_numeric=0, n_strings=2, categories=("strings",), log=lambda line: None)
  shutil.copytree(root / "find", root / "find_no_tests")
  (root / "find_no_tests" / "strings" / "unit_test_data.json").unlink()
  (root / "results" / "strings" / "f00000").mkdir(parents=True)
  (root / "results" / "strings" / "f00000" / "description.txt").write_text("reverses the string")
  return root


MISTAKES = [
    # train / eval: methods, configs, workdirs
    (["train", "find", *AIRLETTERS, "--workdir", "$w"], "find has no training step (see `jaxlab find --help`"),
    (["train", "airletters", "--config", "train/configs/esd.py:tiny", "--workdir", "$w"],
     "train/configs/esd.py:tiny is a config of esd, not airletters; pass --config airletters:VARIANT"),
    (["eval", "airletters", "--workdir", "$esd_run"],
     "esd_run/config.json is a config of esd, not airletters; evaluate it with `jaxlab eval esd --workdir"),
    (["eval", "find", "--workdir", "$esd_run"], "find has no evaluate step"),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$afile"], "afile is a file; pass a folder"),
    (["eval", "airletters", "--workdir", "$afile"], "afile is a file; pass the folder of a `jaxlab train` run"),
    (["eval", "airletters", "--workdir", "$esd_run", "--step", "-1"], "argument --step: -1 is less than 0"),
    (["train", "airletters", "--config", "$afile", "--workdir", "$w"], "afile is not a Python file"),
    (["train", "airletters", "--config", "$bad.py", "--workdir", "$w"], "bad.py does not parse: '(' was never closed"),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.dtype=float33"],
     "--config.dtype='float33' is no dtype"),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.total_steps=-3"],
     "--config.total_steps=-3: must be an integer >= 1"),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.log_every=0"],
     "--config.log_every=0: must be an integer >= 1"),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.batch_size=7"],
     "--config.batch_size=7 is not divisible by the 8 data-parallel devices"),
    # weights folders
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.pretrained=$clip_text"],
     "clip_text holds a model of class CLIPTextModel; VideoMAEForVideoClassification or VideoMAEModel is needed"),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.pretrained=$videomae_truncated"],
     "model.safetensors is not a readable safetensors file ("),
    (["train", "airletters", *AIRLETTERS, "--workdir", "$w", "--config.pretrained=$videomae_badcfg"],
     "videomae_badcfg/config.json is not valid JSON"),
    # generate
    (["generate", "--pipeline", "$nowhere", "--prompts", "$dup.csv", "--out", "$w"],
     "dup.csv:3: case_number 3 is also on line 2"),
    (["generate", "--pipeline", "$nowhere", "--prompts", "$few.csv", "--out", "$w"],
     "few.csv:2: the row does not have the header's 3 fields"),
    (["generate", "--pipeline", "$nowhere", "--prompt", "cat", "--out", "$w", "--unet-weights", "$model.pt"],
     "model.pt is a pickle checkpoint; jaxlab reads safetensors and never unpickles"),
    (["generate", "--pipeline", "$nowhere", "--prompt", "cat", "--out", "$w", "--unet-weights", "$none.safetensors"],
     "none.safetensors not found"),
    (["generate", "--pipeline", "$nowhere", "--prompt", "cat", "--out", "$w", "--unet", "$vae"],
     "vae holds a model of class AutoencoderKL; UNet2DConditionModel or UNet3DConditionModel is needed here"),
    (["generate", "--pipeline", "$nowhere", "--prompt", "cat", "--out", "$afile"], "--out"),
    (["generate", "--pipeline", "$nowhere", "--prompt", "cat", "--out", "$w", "--num-images", "0"],
     "argument --num-images: 0 is less than 1"),
    # bench, demo, data
    (["bench", "video_vit", "--steps", "0"], "argument --steps: 0 is less than 1"),
    (["bench", "video_vit", "--config", "huge"], "no video_vit size 'huge'; choose tiny, small, paper"),
    (["demo", "--workdir", "$afile", "--only", "find"], "afile: File exists; check the path"),
    (["data", "airletters-synth", "--out", "$afile"], "afile/videos: Not a directory; check the path"),
    (["data", "build", "airletters", "--manual-dir", "$airletters", "--data-dir", "$w", "--config",
      '{"name": "strict", "on_bad_video": "fail"}'], "train: train.csv line 2: 2 fields where the header has 5"),
    (["data", "build", "airletters", "--manual-dir", "$airletters", "--data-dir", "$w", "--config", "fps99"],
     "airletters has no config 'fps99'; its configs: fps15_short128"),
    (["data", "build", "something_else", "--manual-dir", "$smth", "--data-dir", "$w", "--config",
      "compositional_boxes"], "lacks bounding_box_smthsmth_part3.json of the 4 box annotation parts"),
    # find
    (["find", "build", "--out", "$afile", "--numeric", "0", "--strings", "2"], "Not a directory; check the path"),
    (["find", "build", "--out", "$w", "--numeric", "0", "--strings", "1"],
     "one string function cannot have unit tests"),
    (["find", "interpret", "--dataset", "$find", "--category", "strings", "--out", "$w", "--functions", "f99999"],
     "--functions names f99999, which"),
    (["find", "interpret", "--dataset", "$find", "--category", "strings", "--out", "$w", "--limit", "-1"],
     "argument --limit: -1 is less than 0"),
    (["find", "score", "--dataset", "$find_no_tests", "--results", "$results"],
     "strings/unit_test_data.json not found: scoring strings needs its unit tests"),
    (["find", "interpret", "--dataset", "$nowhere", "--category", "strings", "--out", "$w"],
     "nowhere/strings/data.json not found"),
    # audit
    (["audit", "robots", "--json", "$robots_bad.json"], "robots_bad.json is not valid JSON: Expecting"),
    (["audit", "robots", "--json", "$robots_list.json"], "should map domains to {date: robots.txt text}"),
    (["audit", "sample", "--tokens", "$tokens_neg.csv", "--out", "$w"],
     "c4_tokens must be a whole number >= 0 (0 for a domain the corpus lacks); 1 rows are not: line 3 ('-4')"),
    (["audit", "tokens", "--c4", "$nowhere/*.json.gz", "--out", "$w/t.csv"], "matches no file"),
    (["audit", "label", "--crawl", "$nowhere"], "is not a folder; give the --out folder of `jaxlab audit crawl`"),
]


def _expand(argv, files, workdir):
  names = {"w": workdir, "nowhere": files / "nowhere"}

  def one(arg):
    for name, path in sorted(names.items(), key=lambda kv: -len(kv[0])):
      arg = arg.replace(f"${name}", str(path))
    while "$" in arg:
      start = arg.index("$")
      end = next((i for i in range(start + 1, len(arg)) if not (arg[i].isalnum() or arg[i] in "._")), len(arg))
      arg = arg[:start] + str(files / arg[start + 1:end]) + arg[end:]
    return arg

  return [one(arg) for arg in argv]


@pytest.mark.parametrize("argv, message", MISTAKES, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _) in enumerate(MISTAKES)])
def test_a_mistake_is_one_line(files, tmp_path, capsys, argv, message):
  try:
    code = cli.main(_expand(argv, files, tmp_path / "w"))
  except SystemExit as e:  # argparse's own errors
    code = e.code
  err = capsys.readouterr().err
  # Progress bars (TFDS' on a build) aside, what is said is one line.
  lines = [line for line in re.split(r"[\r\n]+", err) if re.search(r"error|Error|warn|jaxlab", line)]
  assert code == 2, err
  assert "Traceback" not in err
  assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], err
  assert not (files / "nowhere").exists()
