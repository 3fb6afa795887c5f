"""The one train loop shared by every method."""

from jaxlab.training import workdir
from jaxlab.training.checkpoint import Checkpointer, restore_for_eval
from jaxlab.training.config import base_config, check_settings, load_config, load_saved_config, save_config
from jaxlab.training.loop import TrainingStopped, load_for_eval, make_train_step, state_layout, train
from jaxlab.training.metrics import MetricWriter
from jaxlab.training.task import Task

__all__ = [
    "Checkpointer", "MetricWriter", "Task", "TrainingStopped", "base_config", "check_settings", "load_config",
    "load_saved_config", "save_config", "load_for_eval", "make_train_step", "restore_for_eval", "state_layout",
    "train", "workdir",
]
