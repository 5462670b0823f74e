"""Task-independent training: the loop (`loop.py`) and the run-directory state (`checkpoint.py`).

The translator (`seqlab.translate.train`) and the captioner (`seqlab.caption.train`) are thin
adapters on top: they supply the data, the model, the per-batch loss and the dev metric.
"""

from seqlab.training.loop import TrainConfig, WarmupPlateau, train_loop

__all__ = ["TrainConfig", "WarmupPlateau", "train_loop"]
