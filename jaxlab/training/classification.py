"""Classification figures from a model's logits, shared by the video-classification methods."""

import numpy as np


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """top-1, top-5 and mean per-class accuracy, the per-class accuracies (NaN for a class with no example) and
  the confusion matrix (rows: true labels) of `logits` `[N, num_classes]` against `labels` `[N]`."""
  top5 = np.argsort(-logits, axis=1)[:, :5]
  predicted = top5[:, 0]
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, predicted), 1)
  support = confusion.sum(1)
  per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
  return {
      "top1": float((predicted == labels).mean()),
      "top5": float((top5 == labels[:, None]).any(1).mean()),
      "mean_class_accuracy": float(np.nanmean(per_class)),
      "num_examples": int(len(labels)),
      "per_class": per_class,
      "confusion": confusion,
  }
