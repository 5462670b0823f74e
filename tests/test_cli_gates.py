"""`seqlab gates`: the command, its built-in example and its error messages."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from seqlab.cli import main
from seqlab.gates import MemoryTaskConfig, builtin_memory_run, run_builtin_gates_demo

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return CliRunner().invoke(main, ["gates", *args])


def test_builtin_example_is_trained_and_interpretable(tmp_path):
    run = builtin_memory_run(MemoryTaskConfig())
    g = run.gates
    store, recall = 3, 15
    # the read-out learned the task: the title reports the stored value and the answer
    assert "STORE" in run.title and "RECALL" in run.title
    # some unit's input gate opens at STORE far more than on the distractors
    i = g.i[0, 0, 0]  # (T, H)
    others = torch.cat([i[:store], i[store + 1:]])
    assert (i[store] - others.max(0).values).max() > 0.2
    # and the answer at RECALL is close to the stored value
    value = float(run.inputs["value"][store])
    answer = float(run.title.rsplit("outputs", 1)[1])
    assert abs(answer - value) < 0.15
    paths = run_builtin_gates_demo(tmp_path / "demo")
    assert [p.name for p in paths] == ["gates_memory_task.png"]
    assert paths[0].read_bytes()[:8] == PNG
    assert recall < g.f.shape[3]


def test_text_train_save_and_reload_weights(tmp_path):
    out, weights = tmp_path / "t.png", tmp_path / "w.safetensors"
    res = invoke("--text", "abcabcabd", "--train-steps", "30", "--hidden-size", "6",
                 "-o", str(out), "--units", "0,2", "--save-weights", str(weights))
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == PNG
    # the saved weights are torch.nn.LSTM weights
    from safetensors.torch import load_file

    ref = torch.nn.LSTM(4, 6, batch_first=True)
    ref.load_state_dict(load_file(weights))
    out2 = tmp_path / "t2.svg"
    res = invoke("--text", "dcba", "--weights", str(weights), "-o", str(out2))
    assert res.exit_code == 0, res.output
    assert b"<svg" in out2.read_bytes()[:400]
    res = invoke("--text", "xyz", "--weights", str(weights), "-o", str(tmp_path / "n.png"))
    assert res.exit_code == 2 and "not in the weights' alphabet" in res.stderr
    assert not (tmp_path / "n.png").exists()


def test_csv_with_torch_weights_under_a_prefix(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("t,temp\n" + "".join(f"{k},{(k % 5) * 1.5}\n" for k in range(30)))
    lstm = torch.nn.LSTM(1, 3, num_layers=2, bidirectional=True)
    save_file({f"encoder.{k}": v.contiguous() for k, v in lstm.state_dict().items()},
              str(tmp_path / "enc.safetensors"))
    out = tmp_path / "c.png"
    res = invoke("--csv", str(csv), "--column", "temp", "--weights",
                 str(tmp_path / "enc.safetensors"), "--layer", "1", "--direction", "1",
                 "-o", str(out))
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == PNG
    res = invoke("--csv", str(csv), "--column", "temp", "--train-steps", "5", "-o",
                 str(tmp_path / "c2.png"))
    assert res.exit_code == 0, res.output


def test_bad_input_gives_one_line_errors_and_no_output(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,2\n3,oops\n")
    out = tmp_path / "o.png"
    cases = [
        (["--csv", str(tmp_path / "missing.csv"), "--column", "a"], "file not found"),
        (["--csv", str(csv), "--column", "zz"], "no column 'zz'"),
        (["--csv", str(csv), "--column", "zz"], "available: a, b"),
        (["--csv", str(csv), "--column", "b"], "line 3, column 'b': expected a number, got "
                                               "'oops'"),
        (["--csv", str(csv)], "--column: required"),
        (["--text", ""], "--text: empty text"),
        (["--text", "ab", "--csv", str(csv)], "give one input, not both"),
        (["--text", "ab", "--units", "x,1"], "--units: expected comma-separated"),
        (["--text", "abab", "--train-steps", "1", "--units", "40"], "--units: 40 out of range"),
        (["--text", "ab", "--weights", str(tmp_path / "no.safetensors")], "file not found"),
        (["--text", "abab", "--train-steps", "1", "--layer", "3"], "--layer: 3 out of range"),
    ]
    for args, message in cases:
        res = invoke(*args, "-o", str(out))
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    res = invoke("--text", "ab", "-o", str(tmp_path / "o.txt"))
    assert res.exit_code == 2 and "expected a .png, .svg or .pdf" in res.stderr
    assert list(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_python_dash_m_seqlab_runs_the_same_command_line(tmp_path):
    import os
    import subprocess
    import sys

    import seqlab

    env = {**os.environ, "PYTHONPATH": str(Path(seqlab.__file__).parent.parent)}
    res = subprocess.run([sys.executable, "-m", "seqlab", "--version"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"seqlab, version {seqlab.__version__}"
    # a user error: one line on stderr, exit status 2, nothing written
    out = tmp_path / "g.txt"
    res = subprocess.run([sys.executable, "-m", "seqlab", "gates", "--text", "ab", "-o",
                          str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("error: -o/--output: expected a .png") and \
        res.stderr.count("\n") == 1
    assert not out.exists()
