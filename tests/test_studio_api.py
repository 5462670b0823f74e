"""The studio's JSON API on tiny real runs (FastAPI's TestClient): what each endpoint returns,
checked against the models' own APIs and independent formulas, and the limits and errors."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import threading
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the studio extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

with warnings.catch_warnings():   # starlette's notice about its httpx client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from seqlab.studio.app import Limits, QueueFullError, WorkQueue, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(studio_runs):
    app = create_app([studio_runs.translator, studio_runs.series, studio_runs.captioner])
    with TestClient(app) as c:
        yield c


def upload(path, name=None, mime="text/csv"):
    return {"file": (name or path.name, path.read_bytes(), mime)}


# ----------------------------------------------------------------------------- runs and page


def test_page_docs_and_run_list(client):
    page = client.get("/")
    assert page.status_code == 200 and "seqlab studio" in page.text
    assert client.get("/static/app.js").status_code == 200
    api = client.get("/openapi.json").json()
    assert {"/api/translate", "/api/gates", "/api/gates/series", "/api/series/score",
            "/api/caption", "/api/runs", "/api/runs/{name}"} <= set(api["paths"])
    runs = client.get("/api/runs").json()
    assert [(r["name"], r["kind"]) for r in runs["runs"]] == [
        ("enfr", "translate"), ("series", "series"), ("emoji", "caption")]
    assert runs["gates_models"] == ["char", "enfr"]


def test_run_summaries_have_the_logged_curves(client, studio_runs):
    s = client.get("/api/runs/enfr").json()
    assert s["kind"] == "translate" and s["config"]["model"]["num_heads"] == 2
    log = [json.loads(line) for line in
           (studio_runs.translator / "train_log.jsonl").read_text().splitlines()]
    assert s["curves"]["loss"] == [[r["step"], r["loss"]] for r in log if "loss" in r]
    assert [x for x, _ in s["curves"]["dev_bleu"]] == [r["step"] for r in log
                                                        if "dev_bleu" in r]
    ser = client.get("/api/runs/series").json()
    assert ser["x"] == "epoch" and [x for x, _ in ser["curves"]["val_loss"]] == [1, 2, 3]
    assert client.get("/api/runs/nope").status_code == 404


def test_curves_follow_a_log_that_grows(studio_runs, tmp_path):
    run = tmp_path / "growing"
    shutil.copytree(studio_runs.translator, run)
    with TestClient(create_app([run])) as c:
        before = c.get("/api/runs/growing").json()["curves"]["loss"]
        with (run / "train_log.jsonl").open("a") as f:
            f.write(json.dumps({"step": 999, "epoch": 9, "loss": 0.5, "lr": 1e-3}) + "\n")
            f.write('{"step": 1000, "lo')             # a line still being written
        after = c.get("/api/runs/growing").json()["curves"]["loss"]
    assert after == before + [[999, 0.5]]


# ----------------------------------------------------------------------------- translate


def test_translate_matches_the_translator_api(client, studio_runs):
    from seqlab.translate.api import Translator

    text = "I see two red cats ."
    r = client.post("/api/translate", json={"text": text, "num_beams": 3, "n_best": 2})
    assert r.status_code == 200, r.text
    j = r.json()
    [ref] = Translator.load(studio_runs.translator).translate(
        [text], num_beams=3, return_attention=True, num_return_sequences=2)
    assert j["translation"] == ref.text
    assert j["source_tokens"] == ref.src_tokens and j["target_tokens"] == ref.tgt_tokens
    att = np.array(j["attention"])
    assert att.shape == (len(ref.tgt_tokens), len(ref.src_tokens))
    np.testing.assert_allclose(att, ref.attention, atol=1e-5)
    np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-4)
    scores = [c["score"] for c in j["nbest"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    assert j["tree"] is None and j["heads"] is None       # only with details


def test_translate_details_heads_and_beam_tree(client):
    r = client.post("/api/translate", json={"text": "I have one blue car .", "num_beams": 4,
                                            "details": True})
    j = r.json()
    att = np.array(j["attention"])
    heads = np.array(j["heads"])
    assert heads.shape == (2,) + att.shape
    # the decoder's attention is the mean of its heads
    np.testing.assert_allclose(heads.mean(0), att, atol=1e-4)
    np.testing.assert_allclose(heads.sum(-1), 1.0, atol=1e-4)
    nodes = j["tree"]["nodes"]
    assert nodes[0]["parent"] is None and all(n["parent"] < n["id"] for n in nodes[1:])
    for t in range(max(n["step"] for n in nodes) + 1):
        alive = [n for n in nodes if n["step"] == t and n["alive"]]
        assert 1 <= len(alive) <= 4
    # the best path, root to its end, spells the translation's subwords
    end = max((n for n in nodes if n["best"]), key=lambda n: n["step"])
    path = []
    while end["parent"] is not None:
        path.append(end)
        end = nodes[end["parent"]]
    words = [n["token"] for n in reversed(path) if not n["closed"]]
    assert words == j["target_tokens"]


def test_translate_limits_and_errors(client):
    long = client.post("/api/translate", json={"text": "x" * 501})
    assert long.status_code == 422 and "at most 500" in long.json()["detail"]
    beams = client.post("/api/translate", json={"text": "a", "num_beams": 17})
    assert beams.status_code == 422 and "num_beams" in beams.json()["detail"]
    nb = client.post("/api/translate", json={"text": "a", "num_beams": 2, "n_best": 3})
    assert nb.status_code == 422 and "n_best" in nb.json()["detail"]
    bad = client.post("/api/translate", json={"text": "a", "num_beams": 0})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("num_beams:")
    for name in ("missing", "../enfr", "/etc/passwd", "series"):   # names only, of the kind
        r = client.post("/api/translate", json={"run": name, "text": "a"})
        assert r.status_code == 404 and "enfr" in r.json()["detail"]
    empty = client.post("/api/translate", json={"text": "   "}).json()
    assert empty["translation"] == "" and empty["attention"] == []


# ----------------------------------------------------------------------------- gates


def test_char_model_gates_obey_the_lstm_equations(client):
    text = "hello, gates!"
    r = client.post("/api/gates", json={"model": "char", "text": text})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["labels"] == list(text) and j["num_directions"] == 1
    g = {k: np.array(v, dtype=float) for k, v in j["gates"].items()}
    H = j["hidden_size"]
    for k in "figoch":
        assert g[k].shape == (len(text), H)
    for k in "fio":
        assert g[k].min() >= 0 and g[k].max() <= 1
    # c_t = f_t c_{t-1} + i_t g_t and h_t = o_t tanh(c_t), up to the 4-digit rounding
    c_prev = np.vstack([np.zeros((1, H)), g["c"][:-1]])
    np.testing.assert_allclose(g["c"], g["f"] * c_prev + g["i"] * g["g"], atol=2e-3)
    np.testing.assert_allclose(g["h"], g["o"] * np.tanh(g["c"]), atol=2e-3)
    bad = client.post("/api/gates", json={"model": "char", "text": "caf\u00e9"})
    assert bad.status_code == 400 and "'\u00e9'" in bad.json()["detail"]


def test_translator_encoder_gates_both_directions(client):
    fwd = client.post("/api/gates", json={"model": "enfr", "text": "I see one cat ."}).json()
    bwd = client.post("/api/gates", json={"model": "enfr", "text": "I see one cat .",
                                          "direction": 1}).json()
    assert fwd["labels"][-1] == "</s>" and fwd["num_directions"] == 2
    assert len(fwd["gates"]["h"]) == len(fwd["labels"]) == len(bwd["gates"]["h"])
    assert fwd["gates"]["h"] != bwd["gates"]["h"]
    r = client.post("/api/gates", json={"model": "enfr", "text": "a", "direction": 2})
    assert r.status_code == 400 and "direction" in r.json()["detail"]
    assert client.post("/api/gates", json={"model": "emoji", "text": "a"}).status_code == 404


def test_series_window_gates(client, studio_runs):
    r = client.post("/api/gates/series", files=upload(studio_runs.anomaly_csv),
                    data={"start": "100"})
    assert r.status_code == 200, r.text
    j = r.json()
    w = j["window"]
    frame = pd.read_csv(studio_runs.anomaly_csv)
    assert j["labels"] == [str(t) for t in range(100, 100 + w)]
    np.testing.assert_allclose(j["inputs"]["a"], frame["a"][100:100 + w], atol=1e-3)
    assert np.array(j["gates"]["c"]).shape == (w, j["hidden_size"])
    late = client.post("/api/gates/series", files=upload(studio_runs.anomaly_csv),
                       data={"start": str(len(frame) - w + 1)})
    assert late.status_code == 400 and "no full window" in late.json()["detail"]


# ----------------------------------------------------------------------------- series


def test_series_scores_find_the_burst(client, studio_runs):
    from seqlab.series.estimator import SeriesAutoencoder

    r = client.post("/api/series/score", files=upload(studio_runs.anomaly_csv),
                    data={"run": "series"})
    assert r.status_code == 200, r.text
    j = r.json()
    frame = pd.read_csv(studio_runs.anomaly_csv)
    assert j["columns"] == ["a", "b"] and j["n_points"] == len(frame)
    np.testing.assert_allclose(np.array(j["values"]), frame[["a", "b"]].to_numpy(), atol=1e-4)
    assert j["timestamps"][0] == "2024-01-01T00:00:00"
    est = SeriesAutoencoder.load(studio_runs.series)
    assert j["threshold"] == pytest.approx(est.threshold_)
    np.testing.assert_allclose(j["scores"], est.score_samples(str(studio_runs.anomaly_csv)),
                               rtol=1e-3, atol=1e-3)
    a, b = studio_runs.anomaly_span
    hits = [e for e in j["events"] if e["start_index"] <= b and e["end_index"] >= a]
    assert hits and all(e["peak_score"] > j["threshold"] for e in j["events"])
    assert np.array(j["reconstruction"]).shape == (len(frame), 2)


def test_series_upload_errors(client, studio_runs, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,a,b\n2024-01-01,1,2\n2024-01-02,oops,3\n")
    r = client.post("/api/series/score", files=upload(bad))
    assert r.status_code == 400
    assert r.json()["detail"] == "bad.csv: line 3: column 'a': not a number: 'oops'"
    r = client.post("/api/series/score", files={"file": ("e.csv", b"", "text/csv")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.post("/api/series/score", files=upload(bad), data={"run": "enfr"})
    assert r.status_code == 404


def test_upload_size_limit(studio_runs):
    app = create_app([studio_runs.series], Limits(max_upload_bytes=2000))
    with TestClient(app) as c:
        r = c.post("/api/series/score", files=upload(studio_runs.anomaly_csv))
        assert r.status_code == 413 and "limit is 2,000 bytes" in r.json()["detail"]


# ----------------------------------------------------------------------------- caption


def test_caption_with_word_maps(client, studio_runs):
    from PIL import Image

    from seqlab.caption.api import Captioner

    r = client.post("/api/caption", files=upload(studio_runs.image, mime="image/png"),
                    data={"num_beams": "2"})
    assert r.status_code == 200, r.text
    j = r.json()
    ref = Captioner.load(studio_runs.captioner).caption([str(studio_runs.image)], num_beams=2)
    assert j["caption"] == ref[0]
    maps = np.array(j["word_attention"])
    assert maps.shape == (len(j["words"]), j["grid"], j["grid"])
    np.testing.assert_allclose(maps.sum((1, 2)), 1.0, atol=1e-3)
    png = base64.b64decode(j["image"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (32, 32)
    r = client.post("/api/caption", files={"file": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and "x.png: not an image" in r.json()["detail"]


# ----------------------------------------------------------------------------- the queue


def test_work_queue_bounds_the_waiting_calls():
    q = WorkQueue(max_waiting=2)
    release = threading.Event()

    async def main():
        slow = [asyncio.create_task(q.run(release.wait, 10)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError, match="2 requests waiting"):
            await q.run(lambda: 1)
        release.set()
        assert await asyncio.gather(*slow) == [True, True]
        return await q.run(lambda: 7)              # room again

    assert asyncio.run(main()) == 7
    assert q.waiting == 0 and q.served == 3
    q.shutdown()


def test_full_queue_is_a_503_and_the_rest_still_answers(studio_runs):
    app = create_app([studio_runs.translator], Limits(max_queue=0))
    with TestClient(app) as c:
        r = c.post("/api/translate", json={"text": "I see one cat ."})
        assert r.status_code == 503 and "queue is full" in r.json()["detail"]
        assert r.headers["retry-after"] == "1"
        assert c.get("/api/runs").status_code == 200


# ----------------------------------------------------------------------------- the command


def test_cli_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from seqlab.cli import main

    r = CliRunner().invoke(main, ["studio", str(tmp_path)])
    assert r.exit_code == 2 and r.output.strip() == \
        f"error: {tmp_path.resolve()}: not a seqlab run directory (no config.json)"
    (tmp_path / "config.json").write_text('{"format": "other/1"}')
    r = CliRunner().invoke(main, ["studio", str(tmp_path)])
    assert r.exit_code == 2 and "format 'other/1' is not a seqlab run format" in r.output


def test_cli_missing_extra_is_one_line(monkeypatch, studio_runs):
    import sys

    from click.testing import CliRunner

    from seqlab.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)       # as if not installed
    r = CliRunner().invoke(main, ["studio", str(studio_runs.series)])
    assert r.exit_code == 2
    assert r.output.strip() == ("error: seqlab studio needs the 'studio' extra (uvicorn is "
                                "missing): pip install 'seqlab[studio]'")


def test_cli_serves_on_loopback_and_prints_the_url(studio_runs):
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-c", "from seqlab.cli import main; main()",
                             "studio", str(studio_runs.series), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("seqlab studio: http://127.0.0.1:"), line
        url = line.split()[2]
        assert "series (series)" in line
        body = None
        for _ in range(100):                 # uvicorn binds just after the line is printed
            try:
                with urllib.request.urlopen(url + "api/runs", timeout=5) as resp:
                    body = json.loads(resp.read())
                break
            except OSError:
                threading.Event().wait(0.1)
        assert body is not None and body["runs"] == [{"name": "series", "kind": "series"}]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_translations_waiting_together_run_as_one_batch(studio_runs):
    import httpx

    app = create_app([studio_runs.translator])
    texts = ["I see two red cats .", "I have one dog .", "I want three blue books .",
             "I see one white horse .", "I have four black cars ."]
    release = threading.Event()

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://studio") as c:
            one_by_one = [(await c.post("/api/translate", json={"text": t, "num_beams": 3}))
                          .json() for t in texts]
            batches = app.state.translations.batches
            blocker = asyncio.create_task(app.state.queue.run(release.wait, 30))
            reqs = [asyncio.create_task(c.post("/api/translate",
                                               json={"text": t, "num_beams": 3}))
                    for t in texts]
            while app.state.queue.waiting < 1 + len(texts):
                await asyncio.sleep(0.01)
            release.set()
            await blocker
            together = [(await r).json() for r in reqs]
            return one_by_one, together, app.state.translations.batches - batches

    one_by_one, together, batches = asyncio.run(main())
    assert batches == 1                          # all five in one model call
    for a, b in zip(one_by_one, together, strict=True):
        assert a["translation"] == b["translation"]
        assert a["target_tokens"] == b["target_tokens"]
        np.testing.assert_allclose(a["attention"], b["attention"], atol=1e-4)
    app.state.queue.shutdown()


# ----------------------------------------------------------------------------- a Transformer run

@pytest.fixture(scope="module")
def transformer_client(studio_transformer_run):
    with TestClient(create_app([studio_transformer_run])) as c:
        yield c


def test_transformer_details_have_every_layer_and_head(transformer_client):
    r = transformer_client.post("/api/translate", json={"text": "I see two red cats .",
                                                        "num_beams": 3, "details": True})
    assert r.status_code == 200, r.text
    j = r.json()
    att, heads, layers = (np.array(j[k]) for k in ("attention", "heads", "layers"))
    T, S = len(j["target_tokens"]), len(j["source_tokens"])
    assert T > 0 and att.shape == (T, S)
    assert layers.shape == (2, 2, T, S) and np.array_equal(layers[-1], heads)
    np.testing.assert_allclose(layers.sum(-1), 1.0, atol=1e-4)
    # the search's map (incremental, key/value cache) is the teacher-forced last layer's
    # head mean
    np.testing.assert_allclose(heads.mean(0), att, atol=1e-4)
    plain = transformer_client.post("/api/translate", json={"text": "I see two red cats ."})
    assert plain.json()["layers"] is None and plain.json()["heads"] is None


def test_transformer_has_no_gates_and_says_so(transformer_client):
    r = transformer_client.post("/api/gates", json={"model": "trf", "text": "I see one cat ."})
    assert r.status_code == 400 and "Transformer" in r.json()["detail"]
