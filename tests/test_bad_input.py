"""Bad input through every subcommand: one line on stderr ("error: ..." naming the problem),
exit status 2, no traceback, and no file written or changed anywhere (a snapshot of the whole
test world and of the working directory, content hashes included, before and after each case).

One row per bad input: (id, argv, a fragment the message must contain). The placeholders
({tr}, {csv}, {bomb}, ...) are the files of `bad_input_world.make_world`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bad_input_world import make_world, snapshot
from seqlab.cli import main

FIT = "--window 16 --hidden-size 8 --latent-size 4 --epochs 1 --threads 1"

CASES: list[tuple[str, str, str]] = [
    # ---- seqlab gates
    ("gates-suffix", "gates -o out.txt", ".png, .svg or .pdf"),
    ("gates-out-dir", "gates -o {dirpng}", "is a directory"),
    ("gates-out-under-file", "gates -o {file}/g.png", "is a file, not a directory"),
    ("gates-csv-dir", "gates --csv {dircsv} --column a", "directory"),
    ("gates-csv-missing", "gates --csv {missing}.csv --column a", "missing.csv"),
    ("gates-csv-latin1", "gates --csv {latin1_csv} --column a", "utf-8"),
    ("gates-csv-text", "gates --csv {text_csv} --column b", "expected a number"),
    ("gates-csv-nocol", "gates --csv {csv} --column zzz", "zzz"),
    ("gates-weights-trunc", "gates --text hi --weights {trunc_st}", "trunc.safetensors"),
    ("gates-weights-text", "gates --text hi --weights {file}", "file"),
    ("gates-weights-dir", "gates --text hi --weights {dir}", "dir"),
    ("gates-units", "gates --units x", "--units"),
    ("gates-units-empty", "gates --units ,", "--units"),
    ("gates-layer-neg", "gates --layer -1", "--layer"),
    ("gates-direction", "gates --direction 2", "--direction"),
    ("gates-hidden-0", "gates --hidden-size 0", "--hidden-size"),
    ("gates-max-steps-0", "gates --max-steps 0", "--max-steps"),
    ("gates-train-steps-neg", "gates --train-steps -1", "--train-steps"),
    ("gates-text-and-csv", "gates --text a --csv {csv}", "not both"),
    ("gates-column-alone", "gates --column a", "--column"),
    ("gates-model-missing", "gates --model {missing} --text hi", "missing"),
    ("gates-model-file", "gates --model {file} --text hi", "file"),
    ("gates-save-dir", "gates --text hi --save-weights {dir}", "is a directory"),
    ("gates-device", "gates --device cuda:99", "cuda"),
    ("gates-seed", "gates --seed x", "--seed"),
    ("gates-start", "gates --start -3", "--start"),
    ("gates-layer-range", "gates --text hi --train-steps 1 --layer 4", "layer"),
    ("gates-model-ser-text", "gates --model {ser} --text hi", "csv"),
    # ---- seqlab demo
    ("demo-minutes-0", "demo --minutes 0", "--minutes"),
    ("demo-minutes-neg", "demo --minutes -1", "--minutes"),
    ("demo-minutes-nan", "demo --minutes nan", "--minutes"),
    ("demo-minutes-inf", "demo --minutes inf", "finite"),
    ("demo-out-file", "demo --out {file}", "not a directory"),
    ("demo-out-under-file", "demo --out {file}/sub", "is a file"),
    ("demo-skip", "demo --skip everything", "--skip"),
    ("demo-threads-0", "demo --threads 0", "--threads"),
    ("demo-threads-word", "demo --threads many", "--threads"),
    # ---- seqlab translate train
    ("tt-out-file", "translate train --out {file}", "not a directory"),
    ("tt-out-under-file", "translate train --out {file}/run", "is a file"),
    ("tt-budget-0", "translate train --out {new} --time-budget 0", "--time-budget"),
    ("tt-budget-neg", "translate train --out {new} --time-budget -5", "--time-budget"),
    ("tt-budget-inf", "translate train --out {new} --time-budget inf", "finite"),
    ("tt-steps-neg", "translate train --out {new} --max-steps -1", "--max-steps"),
    ("tt-steps-0", "translate train --out {new} --max-steps 0", "--max-steps"),
    ("tt-batch-0", "translate train --out {new} --batch-tokens 0", "--batch-tokens"),
    ("tt-vocab-0", "translate train --out {new} --vocab-size 0", "--vocab-size"),
    ("tt-vocab-200", "translate train --out {new} --vocab-size 200", "--vocab-size"),
    ("tt-lr-0", "translate train --out {new} --lr 0", "--lr"),
    ("tt-lr-nan", "translate train --out {new} --lr nan", "--lr"),
    ("tt-dropout", "translate train --out {new} --dropout 1.5", "--dropout"),
    ("tt-smoothing", "translate train --out {new} --label-smoothing -0.1", "--label-smoothing"),
    ("tt-eval-every", "translate train --out {new} --eval-every 0", "--eval-every"),
    ("tt-patience", "translate train --out {new} --patience 0", "--patience"),
    ("tt-emb-0", "translate train --out {new} --embedding-dim 0", "--embedding-dim"),
    ("tt-heads-0", "translate train --out {new} --num-heads 0", "--num-heads"),
    ("tt-attention", "translate train --out {new} --attention foo", "--attention"),
    ("tt-threads", "translate train --out {new} --threads 0", "--threads"),
    ("tt-epochs", "translate train --out {new} --max-epochs 0", "--max-epochs"),
    ("tt-old-and-new", "translate train --out {new} --emb 8 --embedding-dim 8", "not both"),
    ("tt-decay-neg", "translate train --out {new} --decay-steps -1", "--decay-steps"),
    ("tt-decay-alone", "translate train --out {new} --corpus {corpus} --decay-steps 5",
     "max_steps"),
    ("tt-device", "translate train --out {new} --device cuda:99", "cuda"),
    ("tt-corpus-dir", "translate train --out {new} --corpus {dir}", "dir"),
    ("tt-corpus-latin1", "translate train --out {new} --corpus {latin1_tsv}", "utf-8"),
    ("tt-corpus-notab", "translate train --out {new} --corpus {notab_tsv}", "notab.tsv"),
    ("tt-corpus-empty", "translate train --out {new} --corpus {empty_tsv}", "empty.tsv"),
    ("tt-corpus-unknown", "translate train --out {new} --corpus no-such-corpus", "no-such"),
    ("tt-max-len", "translate train --out {new} --corpus {corpus} --vocab-size 300 --max-len 1",
     "length filter"),
    ("tt-resume-missing", "translate train --out {missing} --resume", "not found"),
    ("tt-existing-run", "translate train --out {tr} --corpus {corpus}", "already holds"),
    ("tt-resume-badjson", "translate train --out {tr_badjson} --resume", "config.json"),
    # ---- seqlab translate run
    ("tr-missing-run", "translate run {missing} hello", "missing"),
    ("tr-run-is-file", "translate run {file} hello", "file"),
    ("tr-nothing", "translate run {tr}", "nothing to translate"),
    ("tr-input-missing", "translate run {tr} -i {missing}", "missing"),
    ("tr-input-dir", "translate run {tr} -i {dir}", "directory"),
    ("tr-input-latin1", "translate run {tr} -i {latin1_txt}", "utf-8"),
    ("tr-input-and-args", "translate run {tr} hello -i {txt}", "not both"),
    ("tr-max-new-0", "translate run {tr} hello --max-new-tokens 0", "--max-new-tokens"),
    ("tr-max-new-neg", "translate run {tr} hello --max-new-tokens -3", "--max-new-tokens"),
    ("tr-beams-0", "translate run {tr} hello --num-beams 0", "--num-beams"),
    ("tr-nbest", "translate run {tr} hello --num-beams 2 --n-best 3", "--n-best"),
    ("tr-batch-0", "translate run {tr} hello --batch-size 0", "--batch-size"),
    ("tr-penalty-nan", "translate run {tr} hello --length-penalty nan", "--length-penalty"),
    ("tr-plot-dir", "translate run {tr} hello --attention-plot {dirpng}", "is a directory"),
    ("tr-plot-under-file", "translate run {tr} hello --attention-plot {file}/a.png",
     "is a file"),
    ("tr-plot-suffix", "translate run {tr} hello --attention-plot a.txt", ".png"),
    ("tr-trunc-weights", "translate run {tr_trunc} hello", "model.safetensors"),
    ("tr-bad-json", "translate run {tr_badjson} hello", "config.json"),
    ("tr-bad-type", "translate run {tr_badtype} hello", "embedding_dim"),
    ("tr-device", "translate run {tr} hello --device cuda:99", "cuda"),
    # ---- seqlab translate eval
    ("te-limit-0", "translate eval {tr} --limit 0", "--limit"),
    ("te-limit-neg", "translate eval {tr} --limit -1", "--limit"),
    ("te-batch-0", "translate eval {tr} --batch-size 0", "--batch-size"),
    ("te-beams-0", "translate eval {tr} --num-beams 0", "--num-beams"),
    ("te-corpus-latin1", "translate eval {tr} --corpus {latin1_tsv}", "utf-8"),
    ("te-corpus-dir", "translate eval {tr} --corpus {dir}", "dir"),
    ("te-missing", "translate eval {missing}", "missing"),
    ("te-split", "translate eval {tr} --split nope", "--split"),
    ("te-trunc", "translate eval {tr_trunc}", "model.safetensors"),
    # ---- seqlab caption train
    ("ct-out-file", "caption train --out {file}", "not a directory"),
    ("ct-minutes-0", "caption train --out {new} --minutes 0", "--minutes"),
    ("ct-minutes-neg", "caption train --out {new} --minutes -1", "--minutes"),
    ("ct-steps-neg", "caption train --out {new} --max-steps -2", "--max-steps"),
    ("ct-batch-0", "caption train --out {new} --batch-size 0", "--batch-size"),
    ("ct-image-12", "caption train --out {new} --image-size 12", "multiple of 8"),
    ("ct-image-0", "caption train --out {new} --image-size 0", "--image-size"),
    ("ct-lr-neg", "caption train --out {new} --lr -1", "--lr"),
    ("ct-vocab-0", "caption train --out {new} --vocab-size 0", "--vocab-size"),
    ("ct-data-missing", "caption train --out {new} --data {missing}", "missing"),
    ("ct-data-nocaptions", "caption train --out {new} --data {dir}", "captions.tsv"),
    ("ct-data-latin1", "caption train --out {new} --data {latin1_caps}", "utf-8"),
    ("ct-data-missing-img", "caption train --out {new} --data {missingimg_caps}", "not found"),
    ("ct-data-notimage", "caption train --out {new} --data {notimage_caps}", "not an image"),
    ("ct-data-bomb", "caption train --out {new} --data {bomb_caps}", "pixels"),
    ("ct-resume-missing", "caption train --out {missing} --resume", "not found"),
    ("ct-existing-run", "caption train --out {cap} --data {caps}", "already holds"),
    # ---- seqlab caption run / eval
    ("cr-missing-img", "caption run {cap} {missing}.png", "missing.png"),
    ("cr-img-dir", "caption run {cap} {dir}", "dir"),
    ("cr-notimage", "caption run {cap} {notimage}", "not an image"),
    ("cr-bomb", "caption run {cap} {bomb}", "pixels"),
    ("cr-big", "caption run {cap} {bigimg}", "pixels"),
    ("cr-trunc-img", "caption run {cap} {truncimg}", "trunc.png"),
    ("cr-beams-0", "caption run {cap} {img} --beams 0", "--beams"),
    ("cr-plot-dir", "caption run {cap} {img} --attention-plot {dirpng}", "is a directory"),
    ("cr-plot-suffix", "caption run {cap} {img} --attention-plot a.csv", ".png"),
    ("cr-missing-run", "caption run {missing} {img}", "missing"),
    ("cr-trunc-run", "caption run {cap_trunc} {img}", "model.safetensors"),
    ("cr-no-images", "caption run {cap}", "IMAGES"),
    ("ce-limit-0", "caption eval {cap} --limit 0", "--limit"),
    ("ce-beams-0", "caption eval {cap} --beams 0", "--beams"),
    ("ce-split", "caption eval {cap} --split-name train", "--split-name"),
    ("ce-missing", "caption eval {missing}", "missing"),
    # ---- seqlab series fit
    ("sf-missing", f"series fit {{missing}}.csv --out {{new}} {FIT}", "missing.csv"),
    ("sf-dir", f"series fit {{dircsv}} --out {{new}} {FIT}", "dir.csv"),
    ("sf-latin1", f"series fit {{latin1_csv}} --out {{new}} {FIT}", "utf-8"),
    ("sf-empty", f"series fit {{empty_csv}} --out {{new}} {FIT}", "empty"),
    ("sf-header-only", f"series fit {{header_csv}} --out {{new}} {FIT}", "no data rows"),
    ("sf-ragged", f"series fit {{ragged_csv}} --out {{new}} {FIT}", "line 3"),
    ("sf-text", f"series fit {{text_csv}} --out {{new}} {FIT}", "line 3"),
    ("sf-unsorted", f"series fit {{unsorted_csv}} --out {{new}} {FIT}", "line 23"),
    ("sf-dup-ts", f"series fit {{dupts_csv}} --out {{new}} {FIT}", "line 32"),
    ("sf-bad-ts", f"series fit {{badts_csv}} --timestamp time --out {{new}} {FIT}", "line 42"),
    ("sf-huge", f"series fit {{huge_csv}} --columns a --out {{new}} {FIT}", "too large"),
    ("sf-inf", f"series fit {{inf_csv}} --columns a --out {{new}} {FIT}", "no finite value"),
    ("sf-const", f"series fit {{const_csv}} --out {{new}} {FIT}", "constant"),
    ("sf-window-1", f"series fit {{csv}} --out {{new}} {FIT} --window 1", "--window"),
    ("sf-window-long", f"series fit {{csv}} --out {{new}} {FIT} --window 5000", "window"),
    ("sf-epochs-0", f"series fit {{csv}} --out {{new}} {FIT} --epochs 0", "--epochs"),
    ("sf-batch-0", f"series fit {{csv}} --out {{new}} {FIT} --batch-size 0", "--batch-size"),
    ("sf-lr-0", f"series fit {{csv}} --out {{new}} {FIT} --lr 0", "--lr"),
    ("sf-lr-inf", f"series fit {{csv}} --out {{new}} {FIT} --lr inf", "finite"),
    ("sf-dropout-1", f"series fit {{csv}} --out {{new}} {FIT} --dropout 1", "--dropout"),
    ("sf-val-1", f"series fit {{csv}} --out {{new}} {FIT} --val-fraction 1", "--val-fraction"),
    ("sf-quantile-0", f"series fit {{csv}} --out {{new}} {FIT} --quantile 0", "--quantile"),
    ("sf-regression-word", f"series fit {{csv}} --out {{new}} {FIT} --regression some",
     "--regression"),
    ("sf-regression-1", f"series fit {{csv}} --out {{new}} {FIT} --regression 1", "[0, 1)"),
    ("sf-regression-teacher",
     f"series fit {{csv}} --out {{new}} {FIT} --regression 0.5 --decoder-input teacher",
     "decoder_input"),
    ("sf-season", f"series fit {{csv}} --out {{new}} {FIT} --season weekly", "--season"),
    ("sf-out-file", f"series fit {{csv}} --out {{file}} {FIT}", "not a directory"),
    ("sf-out-under-file", f"series fit {{csv}} --out {{file}}/run {FIT}", "is a file"),
    ("sf-columns", f"series fit {{csv}} --columns nope --out {{new}} {FIT}", "nope"),
    ("sf-ts-col", f"series fit {{csv}} --timestamp nope --out {{new}} {FIT}", "nope"),
    ("sf-resume-missing", f"series fit {{csv}} --out {{missing}} --resume {FIT}",
     "nothing to resume"),
    # ---- seqlab series score / embed
    ("ss-missing-data", "series score {ser} {missing}.csv -o {new}.csv", "missing.csv"),
    ("ss-data-dir", "series score {ser} {dircsv} -o {new}.csv", "dir.csv"),
    ("ss-out-dir", "series score {ser} {csv} -o {dir}", "is a directory"),
    ("ss-out-under-file", "series score {ser} {csv} -o {file}/s.csv", "is a file"),
    ("ss-latin1", "series score {ser} {latin1_csv} -o {new}.csv", "utf-8"),
    ("ss-trunc-run", "series score {ser_trunc} {csv} -o {new}.csv", "model.safetensors"),
    ("ss-badjson-run", "series score {ser_badjson} {csv} -o {new}.csv", "config.json"),
    ("ss-missing-run", "series score {missing} {csv} -o {new}.csv", "missing"),
    ("ss-missing-column", "series score {ser} {const_csv} -o {new}.csv", "column"),
    ("ss-plot-dir", "series score {ser} {csv} -o {new}.csv --plot {dirpng}", "is a directory"),
    ("ss-plot-suffix", "series score {ser} {csv} -o {new}.csv --plot p.txt", ".png"),
    ("ss-events-under-file", "series score {ser} {csv} -o {new}.csv --events {file}/e.csv",
     "is a file"),
    ("ss-calibrate", "series score {ser} {csv} -o {new}.csv --calibrate", "--label-column"),
    ("ss-min-gap", "series score {ser} {csv} -o {new}.csv --min-gap -1", "--min-gap"),
    ("ss-unsorted", "series score {ser} {unsorted_csv} -o {new}.csv", "line 23"),
    ("se-out-dir", "series embed {ser} {csv} -o {dir}", "is a directory"),
    ("se-stride-0", "series embed {ser} {csv} -o {new}.csv --stride 0", "--stride"),
    ("se-missing-data", "series embed {ser} {missing}.csv -o {new}.csv", "missing.csv"),
    ("se-embedding", "series embed {ser} {csv} -o {new}.csv --embedding foo", "--embedding"),
    ("se-badjson-run", "series embed {ser_badjson} {csv} -o {new}.csv", "config.json"),
    ("se-plot-dir", "series embed {ser} {csv} -o {new}.csv --plot {dirpng}", "is a directory"),
    # ---- commands added beside this suite: ONNX export, averaging, ensembles, streaming, studio
    ("tx-export-missing", "translate export {missing}", "missing"),
    ("tx-export-file", "translate export {file}", "file"),
    ("tx-export-checkpoint", "translate export {tr} --checkpoint middle", "--checkpoint"),
    ("tx-average-last-0", "translate average {tr} --last 0 -o {new}", "--last"),
    ("tx-average-missing", "translate average {missing} --last 2 -o {new}", "missing"),
    ("tr-average-0", "translate run {tr} hello --average 0", "--average"),
    ("tr-ensemble-missing", "translate run {tr} hello --ensemble {missing}", "missing"),
    ("tr-backend", "translate run {tr} hello --backend tpu", "--backend"),
    ("tt-arch", "translate train --out {new} --arch rnn", "--arch"),
    ("sx-export-missing", "series export {missing}", "missing"),
    ("ss-backend", "series score {ser} {csv} -o {new}.csv --backend tpu", "--backend"),
    ("sw-missing-run", "series watch {missing} {csv}", "missing"),
    ("sw-refit-0", "series watch {ser} {csv} --refit-every 0", "--refit-every"),
    ("studio-missing-run", "studio {missing}", "missing"),
    ("studio-port", "studio --port 70000", "--port"),
    # ---- the command itself
    ("no-such-command", "nosuch", "nosuch"),
    ("no-such-subcommand", "translate nosuch", "nosuch"),
    ("no-such-option", "series fit {csv} --out {new} --nosuch", "--nosuch"),
]


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("world")
    return root, make_world(root)


def _argv(template: str, w: dict[str, str]) -> list[str]:
    return [part.format(**w) for part in template.split()]


def test_at_least_100_distinct_bad_inputs():
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids)
    assert len({c[1] for c in CASES}) >= 100


@pytest.mark.parametrize("case_id, template, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world, tmp_path, monkeypatch, case_id,
                                                   template, fragment):
    root, w = world
    monkeypatch.chdir(tmp_path)      # commands with a default output (gates.png) write here
    before = snapshot(root)
    r = CliRunner().invoke(main, _argv(template, w))
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in r.output
    assert fragment.lower() in err.lower(), err
    assert snapshot(root) == before, "a bad input changed or left files behind"
    assert list(tmp_path.iterdir()) == [], "a bad input wrote into the working directory"


@pytest.mark.parametrize("template", [
    "translate run {tr} hello --max-new-tokens 0",
    "series fit {latin1_csv} --out {new}",
    "caption run {cap} {bomb}",
    "gates -o {file}/g.png",
])
def test_real_process_exit_status_2_one_line(world, tmp_path, template):
    """The installed entry point (a real process): exit status 2, exactly one stderr line."""
    _, w = world
    p = subprocess.run([sys.executable, "-m", "seqlab", *_argv(template, w)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr


# ---- the Python APIs: the same kinds of bad input raise a one-line UserError -----------------

def _tr(w):
    from seqlab.translate.api import Translator

    return Translator.load(w["tr"], device="cpu")


def _cap(w):
    from seqlab.caption.api import Captioner

    return Captioner.load(w["cap"], device="cpu")


def _corpus(w):
    from seqlab.translate.data import read_tsv

    return read_tsv(w["corpus"])


def _api(name: str):
    """Import `module:attr` lazily (the table is built at collection time)."""
    module, attr = name.split(":")
    import importlib

    return getattr(importlib.import_module(module), attr)


NAN = float("nan")
API_CASES = [
    ("translator-load-missing", lambda w: _api("seqlab.translate.api:Translator").load(
        w["missing"]), "missing"),
    ("translator-load-trunc", lambda w: _api("seqlab.translate.api:Translator").load(
        w["tr_trunc"]), "model.safetensors"),
    ("translator-load-badtype", lambda w: _api("seqlab.translate.api:Translator").load(
        w["tr_badtype"]), "embedding_dim"),
    ("translate-max-new-0", lambda w: _tr(w).translate("hi", max_new_tokens=0), "max_new_tokens"),
    ("translate-max-new-neg", lambda w: _tr(w).translate("hi", max_new_tokens=-2),
     "max_new_tokens"),
    ("translate-max-new-huge", lambda w: _tr(w).translate("hi", max_new_tokens=10**9),
     "max_new_tokens"),
    ("translate-beams-0", lambda w: _tr(w).translate("hi", num_beams=0), "num_beams"),
    ("translate-batch-0", lambda w: _tr(w).translate("hi", batch_size=0), "batch_size"),
    ("translate-penalty-nan", lambda w: _tr(w).translate("hi", length_penalty=NAN),
     "length_penalty"),
    ("translate-nbest", lambda w: _tr(w).translate("hi", num_beams=2, num_return_sequences=3),
     "num_return_sequences"),
    ("translate-not-str", lambda w: _tr(w).translate(["hi", None]), "sentences[1]"),
    ("translate-eval-limit-0", lambda w: _tr(w).evaluate(_corpus(w), limit=0), "limit"),
    ("captioner-load-trunc", lambda w: _api("seqlab.caption.api:Captioner").load(
        w["cap_trunc"]), "model.safetensors"),
    ("caption-bomb", lambda w: _cap(w).caption(w["bomb"]), "pixels"),
    ("caption-big-pil", lambda w: _cap(w).caption(
        __import__("PIL.Image").Image.new("1", (8000, 8000))), "pixels"),
    ("caption-notimage", lambda w: _cap(w).caption(w["notimage"]), "not an image"),
    ("caption-dir", lambda w: _cap(w).caption(w["dir"]), "dir"),
    ("caption-beams-0", lambda w: _cap(w).caption(w["img"], num_beams=0), "num_beams"),
    ("caption-batch-0", lambda w: _cap(w).caption(w["img"], batch_size=0), "batch_size"),
    ("caption-not-image", lambda w: _cap(w).caption([123]), "images[0]"),
    ("caption-eval-limit-0", lambda w: _cap(w).evaluate(_cap(w).test_split("train"), limit=0),
     "limit"),
    ("series-load-trunc", lambda w: _api("seqlab.series.estimator:SeriesAutoencoder").load(
        w["ser_trunc"]), "model.safetensors"),
    ("series-load-badjson", lambda w: _api("seqlab.series.estimator:SeriesAutoencoder").load(
        w["ser_badjson"]), "config.json"),
    ("series-csv-latin1", lambda w: _api("seqlab.series.io:read_series_csv")(w["latin1_csv"]),
     "line 3"),
    ("series-csv-dir", lambda w: _api("seqlab.series.io:read_series_csv")(w["dircsv"]),
     "directory"),
    ("series-csv-unsorted", lambda w: _api("seqlab.series.io:read_series_csv")(
        w["unsorted_csv"]), "line 23"),
    ("series-csv-dup-sorted", lambda w: _api("seqlab.series.io:read_series_csv")(
        w["dupts_csv"], sort=True), "more than once"),
    ("train-config-steps", lambda w: _api("seqlab.training.loop:TrainConfig")(max_steps=-1),
     "max_steps"),
    ("train-config-lr-nan", lambda w: _api("seqlab.training.loop:TrainConfig")(lr=NAN), "lr"),
    ("train-config-budget-0", lambda w: _api("seqlab.training.loop:TrainConfig")(
        time_budget_min=0), "time_budget_min"),
    ("train-config-batch-0", lambda w: _api("seqlab.training.loop:TrainConfig")(
        batch_tokens=0), "batch_tokens"),
    ("train-config-type", lambda w: _api("seqlab.training.loop:TrainConfig")(
        eval_every="often"), "eval_every"),
    ("data-config-vocab", lambda w: _api("seqlab.translate.train:DataConfig")(vocab_size=10),
     "vocab_size"),
    ("caption-data-config-size", lambda w: _api("seqlab.caption.data:CaptionDataConfig")(
        image_size=12), "image_size"),
    ("train-translator-corpus-dir", lambda w: _api("seqlab.translate.train:train_translator")(
        w["new"], data_cfg=_api("seqlab.translate.train:DataConfig")(corpus=w["dir"]),
        progress=False, echo=lambda s: None), "dir"),
]


@pytest.mark.parametrize("case_id, call, fragment", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_user_error_and_changes_nothing(world, case_id, call, fragment):
    from seqlab.errors import UserError

    root, w = world
    before = snapshot(root)
    with pytest.raises(UserError) as info:
        call(w)
    message = str(info.value)
    assert "\n" not in message and fragment.lower() in message.lower(), message
    assert snapshot(root) == before


# ---- input made usable, and said so --------------------------------------------------------

def test_sort_reports_moved_rows_and_fills_are_counted(world, tmp_path):
    _, w = world
    r = CliRunner().invoke(main, _argv(f"series fit {{unsorted_csv}} --columns a --sort --out "
                                       f"{tmp_path / 'run'} {FIT}", w))
    assert r.exit_code == 0, r.output
    assert "sorted by timestamp: 2 row(s) moved" in r.stderr
    gaps = tmp_path / "gaps.csv"
    text = Path(w["csv"]).read_text().splitlines()
    for i in (5, 9, 10):          # empty value cells on file lines 5, 9, 10
        fields = text[i - 1].split(",")
        fields[1] = ""
        text[i - 1] = ",".join(fields)
    gaps.write_text("\n".join(text) + "\n")
    r = CliRunner().invoke(main, ["series", "score", w["ser"], str(gaps), "-o",
                                  str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    assert "warning: filled 3 missing or infinite value(s)" in r.stderr
    assert "line 5)" in r.stderr and "wrote" in r.stdout
    r = CliRunner().invoke(main, ["series", "score", w["ser"], str(gaps), "-o",
                                  str(tmp_path / "s.csv")])
    assert r.exit_code == 0 and f"replaced {tmp_path / 's.csv'}" in r.stdout, r.output


def test_a_one_megabyte_line_is_truncated_with_a_warning(world, tmp_path):
    _, w = world
    line = tmp_path / "long.txt"
    line.write_text("I see two red cats . " * 50_000 + "\nI see one dog .\n")
    r = CliRunner().invoke(main, ["translate", "run", w["tr"], "-i", str(line), "--num-beams",
                                  "1", "--max-new-tokens", "5"])
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 2
    assert "warning: 1 sentence(s) longer than 512 subwords truncated" in r.stderr
