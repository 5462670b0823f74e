"""plot_gates: the gate heat maps and C/h line plots of one sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.nn import LSTM
from seqlab.viz.gates_plot import default_units, plot_gates


@pytest.fixture(scope="module")
def gates():
    torch.manual_seed(0)
    lstm = LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 7, 3)
    with torch.no_grad():
        return lstm(x, lengths=torch.tensor([7, 4]), return_gates=True)[2]


def test_png_and_svg_with_labelled_panels(gates, tmp_path):
    labels = list("abcdefg")
    png = tmp_path / "g.png"
    fig = plot_gates(gates, png, step_labels=labels, units=[1, 3], title="my title")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 4  # forget, input, cell update, output
    for image, field in zip(images, ("f", "i", "g", "o"), strict=True):
        # units x steps, the values of layer 0, direction 0, sequence 0
        assert np.allclose(image.get_array(), getattr(gates, field)[0, 0, 0].numpy().T)
    titles = " ".join(ax.get_title(loc="left") for ax in fig.axes)
    for word in ("forget gate", "input gate", "cell update", "output gate", "cell state",
                 "hidden state"):
        assert word in titles
    heat_axes = [ax for ax in fig.axes if ax.images]
    assert all(ax.get_ylabel() == "unit" for ax in heat_axes)
    assert any(ax.get_xlabel() == "time step" for ax in fig.axes)
    assert [t.get_text() for t in heat_axes[0].get_xticklabels()] == labels
    line_axes = [ax for ax in fig.axes if ax.lines and not ax.images]
    assert [ln.get_label() for ln in line_axes[0].lines[:2]] == ["unit 1", "unit 3"]
    assert "my title" in fig._suptitle.get_text()
    svg = tmp_path / "g.svg"
    plot_gates(gates, svg, layer=1, direction=1, batch_index=1)
    assert b"<svg" in svg.read_bytes()[:400]


def test_padding_is_cut_off(gates):
    fig = plot_gates(gates, None, batch_index=1)  # length 4 of 7
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert images[0].get_array().shape == (5, 4)
    assert not np.isnan(np.asarray(images[0].get_array())).any()


def test_bad_choices_raise_and_write_nothing(gates, tmp_path):
    out = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"units: expected unit indices in \[0, 5\)"):
        plot_gates(gates, out, units=[9])
    with pytest.raises(ValueError, match="step_labels: expected 7 labels"):
        plot_gates(gates, out, step_labels=["a"])
    with pytest.raises(ValueError, match=r"layer=2 out of range"):
        plot_gates(gates, out, layer=2)
    with pytest.raises(ValueError, match=r"inputs\['x'\]: expected 7 values"):
        plot_gates(gates, out, inputs={"x": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_default_units_are_the_most_varying():
    c = np.zeros((6, 5))
    c[:, 3] = np.linspace(-2, 2, 6)
    c[:, 1] = np.linspace(0, 1, 6)
    assert default_units(c, k=2) == [1, 3]
