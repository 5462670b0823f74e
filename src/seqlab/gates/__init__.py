"""An LSTM's gates over a sequence, ready to draw (the library behind `seqlab gates`).

Three sources of a `GatesRun` (the gates of one sequence plus its labels and title):

    builtin_memory_run()          a tiny LSTM trained on the remember-until-recall task
    sequence_run(text=... | csv_path=..., weights=None, ...)
                                  a character text or a CSV column, run through LSTM weights
                                  (torch.nn.LSTM names) or a tiny LSTM trained here to predict
                                  the next character / value
    trained_run(run_dir, ...)     the encoder of a trained seqlab run (series autoencoder over
                                  a window of a CSV, translator over a sentence's subwords)

and `draw_run(run, path, layer=0, direction=0, units=None)` writes the picture
(`seqlab.viz.gates_plot.plot_gates`).
"""

from seqlab.gates.memory_task import (
    MemoryTaskConfig,
    builtin_memory_run,
    memory_task_batch,
    run_builtin_gates_demo,
    train_memory_task,
)
from seqlab.gates.record import FIGURE_SUFFIXES, GatesRun, draw_run
from seqlab.gates.sequence import (
    load_lstm_weights,
    read_csv_column,
    sequence_run,
    train_next_step,
)
from seqlab.gates.trained import trained_run

__all__ = [
    "FIGURE_SUFFIXES",
    "GatesRun",
    "MemoryTaskConfig",
    "builtin_memory_run",
    "draw_run",
    "load_lstm_weights",
    "memory_task_batch",
    "read_csv_column",
    "run_builtin_gates_demo",
    "sequence_run",
    "train_memory_task",
    "train_next_step",
    "trained_run",
]
