"""The studio page in a real browser: Playwright drives Debian's Chromium against the real
server (uvicorn on 127.0.0.1, a free port, a background thread) on tiny real runs.

Screenshots go to a temporary folder (printed; kept by pytest as test artefacts) and, when
SEQLAB_STUDIO_SCREENSHOTS names a folder, there too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the studio extra (fastapi) is not installed")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (the dev extra)")

CHROMIUM = next((p for p in (os.environ.get("SEQLAB_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; "
                             "bash scripts/dev.sh test installs it)")


@pytest.fixture(scope="module")
def base_url(studio_runs):
    from seqlab.studio.app import create_app, serve_in_thread

    app = create_app([studio_runs.translator, studio_runs.series, studio_runs.captioner])
    server, thread, port = serve_in_thread(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("studio_screenshots")
    print(f"\nstudio screenshots: {d}")
    return d


@pytest.fixture
def page(browser, base_url):
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    p = ctx.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(base_url)
    p.wait_for_selector("#tr-run option", state="attached")
    yield p
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def save(page, shots: Path, name: str, full_page: bool = True) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    extra = os.environ.get("SEQLAB_STUDIO_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def test_translate_heat_map_hover_and_compare(page, shots):
    page.fill("#tr-input", "I see two red cats .")
    page.click("#tr-go")
    page.wait_for_selector("#tr-results svg.attn rect.cell")
    res = page.evaluate("""fetch('/api/translate', {method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({text: 'I see two red cats .', num_beams: 5})}).then(r => r.json())""")
    first = page.locator("#tr-results .side").first
    main = first.locator("svg.attn").first
    n_src, n_tgt = len(res["source_tokens"]), len(res["target_tokens"])
    assert main.locator("text.tok.src").all_text_contents() == res["source_tokens"]
    assert main.locator("text.tok.tgt").all_text_contents() == res["target_tokens"]
    assert main.locator("rect.cell").count() == n_src * n_tgt
    assert first.locator(".translation").inner_text() == res["translation"]
    # two heads: one map each, and the beam search tree
    assert first.locator(".heads svg.attn").count() == 2
    assert first.locator("svg.tree g.node.best").count() >= 2
    # hovering a target word highlights it and the source words it reads
    main.locator("text.tok.tgt").nth(0).hover()
    assert main.locator("text.tok.tgt.hl").count() == 1
    assert main.locator("text.tok.src.hl").count() >= 1
    assert main.locator("rect.cell.hl").count() == n_src
    # and the reverse: a source word highlights the target words that read it
    main.locator("text.tok.src").nth(2).hover()
    assert main.locator("text.tok.src.hl").count() == 1
    assert main.locator("rect.cell.hl").count() == n_tgt
    save(page, shots, "translate")
    # an edited source side by side
    page.check("#tr-compare")
    page.fill("#tr-input-b", "I see one red cat .")
    page.click("#tr-go")
    page.wait_for_function("document.querySelectorAll('#tr-results .side').length == 2")
    assert page.locator("#tr-results .side").nth(1).locator("svg.attn rect.cell").count() > 0
    save(page, shots, "translate_compare")


def test_gates_hover_and_time_range(page, shots):
    page.click("#tabs button[data-view=gates]")
    page.select_option("#g-model", "char")
    page.fill("#g-text", "hello gates, hello cells")
    page.click("#g-go")
    canvas = page.locator("#g-out canvas").nth(1)          # the forget gate's map
    canvas.wait_for()
    box = canvas.bounding_box()
    assert box["width"] > 100 and box["height"] > 30
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    assert page.locator("#tip").inner_text().startswith("forget gate f, unit 0, step 0 (h)")
    # drag across steps: the units that change most there are listed
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + 10, steps=5)
    page.mouse.up()
    rows = page.locator("#g-units tbody tr")
    rows.first.wait_for()
    assert rows.count() == 12
    save(page, shots, "gates")


def test_series_encoder_gates_over_a_csv_window(page, studio_runs):
    page.click("#tabs button[data-view=gates]")
    page.select_option("#g-model", "series")
    assert page.locator("#g-text-row").is_hidden() and page.locator("#g-csv-row").is_visible()
    page.set_input_files("#g-csv", str(studio_runs.anomaly_csv))
    page.fill("#g-start", "390")
    page.click("#g-go-csv")
    page.wait_for_selector("#g-out canvas")
    # six maps, the step labels and one line per input column (a, b)
    assert page.locator("#g-out canvas").count() == 1 + 6 + 2
    assert "points 390-405" in page.locator("#g-out .card h3").text_content()


def test_series_upload_events_zoom_download(page, shots, studio_runs):
    page.click("#tabs button[data-view=series]")
    page.set_input_files("#s-file", str(studio_runs.anomaly_csv))
    page.click("#s-go")
    rows = page.locator("#s-events tbody tr")
    rows.first.wait_for()
    a, b = studio_runs.anomaly_span
    starts = [int(r.locator("td").nth(3).inner_text()) for r in rows.all()]
    assert all(n > 0 for n in starts)
    assert f"{rows.count()} event(s)" in page.locator("#s-out .card h3").first.text_content()
    save(page, shots, "series")
    # drag to zoom, then the events CSV
    chart = page.locator("#s-chart")
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + 40, steps=4)
    page.mouse.up()
    view = page.evaluate("state.series.view")
    assert 0 < view[0] < view[1] < studio_runs.anomaly_csv.read_text().count("\n")
    with page.expect_download() as dl:
        page.click("#s-download")
    text = Path(dl.value.path()).read_text()
    lines = text.strip().splitlines()
    assert lines[0] == "start,end,start_index,end_index,peak_score"
    spans = [(int(x.split(",")[2]), int(x.split(",")[3])) for x in lines[1:]]
    assert any(s <= b and e >= a for s, e in spans)       # the burst is an event


def test_caption_upload(page, shots, studio_runs):
    page.click("#tabs button[data-view=caption]")
    page.set_input_files("#c-file", str(studio_runs.image))
    page.click("#c-go")
    page.wait_for_selector("#c-text")
    words = page.locator("#c-out .word")
    assert words.count() >= 1
    page.wait_for_function("document.querySelectorAll('#c-out .thumbs canvas').length > 0")
    assert page.locator("#c-out .thumbs figure").count() == words.count()
    words.first.hover()
    assert "active" in words.first.get_attribute("class")
    save(page, shots, "caption")


def test_runs_curves_and_an_error_message(page, shots):
    page.click("#tabs button[data-view=runs]")
    page.wait_for_selector("#runs-out .run polyline")
    assert page.locator("#runs-out .run").count() == 3
    save(page, shots, "runs")
    # a bad request shows the API's one-line message
    page.click("#tabs button[data-view=gates]")
    page.select_option("#g-model", "char")
    page.fill("#g-text", "caf\u00e9")
    page.click("#g-go")
    page.wait_for_selector("#error:not([hidden])")
    assert "not in the char model's alphabet" in page.locator("#error").inner_text()


def test_runs_view_follows_a_training_log(browser, studio_runs, tmp_path):
    import json

    from seqlab.studio.app import create_app, serve_in_thread

    run = tmp_path / "training"
    shutil.copytree(studio_runs.translator, run)
    server, thread, port = serve_in_thread(create_app([run]), "127.0.0.1", 0)
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        p = ctx.new_page()
        p.goto(f"http://127.0.0.1:{port}")
        p.click("#tabs button[data-view=runs]")
        p.wait_for_selector("#runs-out .run polyline")
        assert "loss 0.1234" not in p.locator("#runs-out").text_content()
        with (run / "train_log.jsonl").open("a") as f:     # the training logs another step
            f.write(json.dumps({"step": 30, "epoch": 3, "loss": 0.1234, "lr": 1e-3}) + "\n")
        # the page polls every 5 s
        p.wait_for_function("document.querySelector('#runs-out').textContent"
                            ".includes('loss 0.1234')", timeout=15_000)
    finally:
        ctx.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_transformer_maps_per_decoder_layer_and_head(browser, studio_transformer_run, shots):
    from seqlab.studio.app import create_app, serve_in_thread

    server, thread, port = serve_in_thread(create_app([studio_transformer_run]), "127.0.0.1", 0)
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        p = ctx.new_page()
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.goto(f"http://127.0.0.1:{port}")
        p.wait_for_selector("#tr-run option", state="attached")
        p.fill("#tr-input", "I see two red cats .")
        p.click("#tr-go")
        p.wait_for_selector("#tr-results .heads svg.attn")
        side = p.locator("#tr-results .side").first
        # 2 decoder layers x 2 heads, each layer a card of its own
        assert side.locator(".heads svg.attn").count() == 4
        titles = side.locator("h3").all_text_contents()
        assert any("decoder layer 1" in t for t in titles)
        assert any("decoder layer 2" in t for t in titles)
        save(p, shots, "translate-transformer")
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        ctx.close()
        server.should_exit = True
        thread.join(timeout=10)
