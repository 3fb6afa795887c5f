# Source of motion.ipynb: edit this file, then run `python train/colab/notebooks.py`.

# %% [markdown]
# # Motion customization of a text-to-video model
#
# Materzynska et al., 2023 (arXiv 2312.04966): teach a text-to-video model (ModelScope / ZeroScope, a 3D UNet) a
# new motion from a few clips captioned with a rare word ("a blob doing the sks motion"). Only the temporal
# attention, the temporal convolutions and the cross-attention keys / values train; clips of related motions keep
# the model's prior (video prior preservation). This notebook writes synthetic clips (a blob tracing a circle;
# for the prior, a blob moving up and down), makes a tiny base model that knows only the up-and-down motion,
# tunes it, and shows base and tuned videos from the same noise with the share that a small video classifier
# labels as the circle. About 5 minutes on a 2-core CPU runtime.

# %% parameters
WORKDIR = "runs/colab/motion"
NUM_VIDEOS = 16         # eval videos per model
CLASSIFIER_STEPS = 150  # steps of the motion classifier (`jaxlab train airletters` on the two motions)
CLASSIFIER_CLIPS = {"train": 48, "validation": 8, "test": 8}  # per motion
OVERRIDES = []  # --config.KEY=VALUE settings, e.g. ["total_steps=100"]; the tiny config trains 140 steps

# %%
from pathlib import Path

from jaxlab import notebook, training
notebook.setup()  # 8 CPU devices, as `jaxlab demo` uses (before JAX starts)
from jaxlab.data import motion_synth, video
from jaxlab.methods import motion

workdir = Path(WORKDIR)
run = workdir / "run"
config = training.load_config("motion:tiny", ["mesh.data=-1", *OVERRIDES])
training.save_config(config, run)

# %% [markdown]
# ## The clips
# `videos='synthetic'` writes both clip folders under the run: `clip.mp4` with its caption in `clip.txt`, the
# layout your own clips take. First a clip of the motion to teach, then a regularisation clip.

# %%
instance, reg = motion.clip_folders(config, run)
print((sorted(instance.glob("*.txt"))[0]).read_text(), "|", (sorted(reg.glob("*.txt"))[0]).read_text())
clips = [video.read_video(sorted(folder.glob("*.mp4"))[0])[0] for folder in (instance, reg)]
notebook.show(*(notebook.write_gif(c, workdir / f"{name}.gif", config.fps, scale=3)
                for c, name in zip(clips, ("instance", "reg"))))

# %% [markdown]
# ## The base model, then motion tuning
# `pretrained='tiny-synthetic'` makes the base once (`run/tiny-synthetic`): a tiny `TextToVideoSDPipeline`
# folder whose VAE is trained on the clips' frames and whose whole UNet is pretrained on the up-and-down clips.
# Then the method: the clips' VAE latents are cached, and each step denoises one circle clip and one up-and-down
# clip, `loss = mse_instance + 0.5 * mse_reg`.

# %%
setup = motion.make_setup(config, run)
print(f"{len(setup.selected)} of the UNet's tensors train")
result = training.train(motion.make_task(config, run, setup), config, run)
notebook.show(notebook.plot_metrics(run, ["train/instance_mse", "train/prior_mse"], workdir / "loss.png"))

# %% [markdown]
# ## Base vs tuned
# A classifier of the two motions is trained as a user would (an AirLetters-layout release of them, `jaxlab data
# build airletters`, `jaxlab train airletters`). `jaxlab eval motion` then generates the eval prompts with the
# base and the tuned model from the same noise and reports the share of videos labelled as the circle.

# %%
classifier, classifier_top1 = motion.train_classifier(workdir, CLASSIFIER_STEPS, CLASSIFIER_CLIPS)
prompt = config.synthetic.caption.format(token=config.token)
(workdir / "prompts.txt").write_text("".join(f"{seed},{prompt}\n" for seed in range(NUM_VIDEOS)))
config.eval_prompts, config.eval_classifier = str(workdir / "prompts.txt"), str(classifier)
config.eval_motion_label = motion_synth.LABELS["circle"]
figures = motion.evaluate(config, run)
notebook.show_markdown(f"""classifier validation top-1: {100 * classifier_top1:.0f}%

| model | videos labelled as the taught motion (circle) |
|---|---|
| base | {100 * figures['motion_accuracy/base']:.0f}% |
| tuned | {100 * figures['motion_accuracy/tuned']:.0f}% |""")
gif, grid = motion.base_vs_tuned(run, int(result["step"]), workdir, num=min(4, NUM_VIDEOS))
notebook.show(gif)  # top: base, bottom: tuned, one seed per column

# %% [markdown]
# ## Export to diffusers
# `export/unet/` loads with `UNet3DConditionModel.from_pretrained`; `export/motion.safetensors` holds the
# changed tensors alone, for `pipe.unet.load_state_dict(tensors, strict=False)`.

# %%
for path in motion.export(config, run):
  print(path)
# from diffusers import UNet3DConditionModel
# unet = UNet3DConditionModel.from_pretrained(run / "export" / "unet")

# %% [markdown]
# ## Your clips and weights
# A local diffusers text-to-video folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`,
# `scheduler/`), e.g. `TextToVideoSDPipeline.from_pretrained("cerspense/zeroscope_v2_576w").save_pretrained(DIR)`
# run once where the network is; a folder of clips of the motion, each `clip.mp4` with a caption holding the
# token in `clip.txt`; and clips of related motions for the prior. The paper: 3000 AdamW steps at 5e-6, 16
# frames of 384 px, bf16. Use an accelerator runtime.

# %%
T2V_DIR = ""     # the diffusers text-to-video folder
VIDEOS = ""      # the motion's clips
REG_VIDEOS = ""  # regularisation clips (captions from clip.txt, else the file name)
if T2V_DIR and VIDEOS:
  paper = training.load_config("motion:paper", [f"pretrained={T2V_DIR}", f"videos={VIDEOS}",
                                                f"reg_videos={REG_VIDEOS}"])
  paper_run = workdir / "paper"
  training.save_config(paper, paper_run)
  training.train(motion.make_task(paper, paper_run), paper, paper_run)
  print(motion.export(paper, paper_run))
else:
  print("set T2V_DIR and VIDEOS to tune a real text-to-video model on your clips")
