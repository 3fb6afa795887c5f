"""`jaxlab bench lora` on a toy UNet: both steps run, and the LoRA step's memory is below the full one's."""

from jaxlab.bench import lora as lora_bench
from jaxlab.models import unet2d


def test_bench_runs(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setitem(lora_bench.SIZES, "toy", dict(config=unet2d.UNet2DConfig(
      sample_size=8, block_out_channels=(32,), layers_per_block=(1,), norm_num_groups=8,
      down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",), cross_attention_dim=(32,),
      attention_head_dim=(4,), transformer_layers_per_block=(1,), only_cross_attention=(False,), mid_block_type=None),
      batch_size=1))
  data = lora_bench.run(steps=1, config="toy")
  lora_row, full_row = data["results"]
  assert lora_row["name"].startswith("LoRA") and full_row["name"] == "full UNet fine-tune"
  assert lora_row["step_seconds"] > 0 and full_row["step_seconds"] > 0
  assert data["memory_ratio"] > 1.5 and (tmp_path / "runs" / "bench" / "lora.json").is_file()
