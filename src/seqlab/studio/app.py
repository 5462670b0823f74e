"""The studio web app: one page and a JSON API over the runs given at start.

    from seqlab.studio.app import create_app
    app = create_app(["runs/enfr", "runs/series"])      # serve with uvicorn

Every model call goes through one `WorkQueue`: a single worker thread runs them in turn (torch
uses the cores inside each call), and at most `max_queue` calls wait; more get a 503. So many
clients neither crash the server nor starve it: the page and /api/runs stay answered while the
queue works. Translations that wait together (same run and settings) run as one batch.

Limits (a 4xx JSON error {"detail": "..."} names the field and the limit): text length, beam
size, upload size (CSV and images), image pixels. Runs are reachable only by their names.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from seqlab.errors import UserError
from seqlab.studio import runs as R

T = TypeVar("T")
STATIC = Path(str(resources.files("seqlab.studio") / "static"))


@dataclass
class Limits:
    max_text_chars: int = 500          # a sentence to translate / a text for the gates
    max_beams: int = 16
    max_upload_bytes: int = 5 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_queue: int = 256               # model calls waiting at once (more: 503)


class QueueFullError(Exception):
    pass


class WorkQueue:
    """Model calls run one at a time on a worker thread; at most `max_waiting` wait."""

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self.waiting = 0                       # submitted and not yet finished
        self.served = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-model")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self.waiting >= self.max_waiting:
                raise QueueFullError(f"the model queue is full ({self.max_waiting} requests "
                                "waiting); retry in a moment")
            self.waiting += 1
        try:
            return await asyncio.wrap_future(self._pool.submit(fn, *args))
        finally:
            with self._lock:
                self.waiting -= 1
                self.served += 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(eq=False)
class _Waiting:
    key: tuple
    text: str
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Batcher:
    """Requests of one kind and the same settings that wait in the queue together run as one
    batch: the first of their jobs the worker reaches takes up to `max_batch` of them, the
    others find their result ready. Each request still holds its own place in the queue."""

    def __init__(self, fn: Callable[[tuple, list[str]], list[Any]], max_batch: int = 32):
        self.fn, self.max_batch = fn, max_batch
        self.batches = 0
        self._waiting: list[_Waiting] = []
        self._lock = threading.Lock()

    def add(self, key: tuple, text: str) -> _Waiting:
        item = _Waiting(key, text)
        with self._lock:
            self._waiting.append(item)
        return item

    def discard(self, item: _Waiting) -> None:
        with self._lock:
            if item in self._waiting:
                self._waiting.remove(item)

    def job(self, item: _Waiting) -> Any:
        """Runs on the worker thread."""
        group = None
        with self._lock:
            if not item.done:   # not yet answered by an earlier batch
                group = [item] + [w for w in self._waiting if w.key == item.key
                                  and w is not item][:self.max_batch - 1]
                for w in group:
                    self._waiting.remove(w)
        if group is not None:
            try:
                for w, r in zip(group, self.fn(item.key, [w.text for w in group]), strict=True):
                    w.result = r
            except BaseException as err:
                for w in group:
                    w.error = err
            finally:
                self.batches += 1
                for w in group:
                    w.done = True
        if item.error is not None:
            raise item.error
        return item.result


# ----------------------------------------------------------------------------- API schemas


class TranslateRequest(BaseModel):
    run: str | None = Field(None, description="A translator run's name (default: the first).")
    text: str = Field(..., description="The sentence to translate.")
    num_beams: int = Field(5, ge=1, description="Beam size (1 = greedy).")
    length_penalty: float = Field(1.0, ge=0.0, le=5.0,
                                  description="GNMT length penalty alpha (0 = raw log-prob).")
    n_best: int = Field(1, ge=1, description="Candidates in `nbest` (at most num_beams).")
    details: bool = Field(False, description="Also the beam search `tree` and per-head maps "
                                             "(`heads`, multi-head attention only).")


class TranslateResponse(BaseModel):
    run: str
    translation: str
    source_tokens: list[str] = Field(description="Source subwords as the model saw them (S).")
    target_tokens: list[str] = Field(description="Output subwords (T).")
    attention: list[list[float]] = Field(
        description="(T, S): one row per target token over the source tokens; rows sum to 1.")
    score: float = Field(description="Length-normalised log-probability of the translation.")
    nbest: list[dict[str, Any]] = Field(description="[{translation, score}], best first.")
    heads: list[list[list[float]]] | None = Field(
        None, description="(heads, T, S) per-head maps (details, multi-head only); their mean "
                          "is `attention`.")
    layers: list[list[list[list[float]]]] | None = Field(
        None, description="(layers, heads, T, S) every decoder layer's cross-attention per "
                          "head (details, Transformer only); the last layer's is `heads`.")
    tree: dict[str, Any] | None = Field(
        None, description="Beam search tree (details): {num_beams, nodes: [{id, parent, step, "
                          "token, logprob, alive, closed, best}]}; node 0 is the start.")


class GatesRequest(BaseModel):
    model: str = Field(R.CHAR_MODEL, description="'char' (the built-in char model) or a "
                                                 "translator run's name (its encoder).")
    text: str = Field(..., min_length=1, description="The text; characters (char model) or "
                                                     "subwords (translator) are the steps.")
    layer: int = Field(0, ge=0)
    direction: int = Field(0, ge=0, description="0 = left-to-right, 1 = right-to-left "
                                                "(bidirectional encoders).")


class GatesResponse(BaseModel):
    title: str
    labels: list[str] = Field(description="One label per step (T).")
    num_layers: int
    num_directions: int
    hidden_size: int
    gates: dict[str, list[list[float | None]]] = Field(
        description="f, i, g, o (forget, input, cell update, output gates), c (cell state), "
                    "h (hidden state): each (T, H).")
    inputs: dict[str, list[float | None]] = Field(description="Input channels shown with "
                                                              "the gates (series windows).")
    window: int | None = None
    n_points: int | None = None


class SeriesResponse(BaseModel):
    run: str
    columns: list[str]
    n_points: int
    timestamps: list[Any] | None
    values: list[list[float | None]] = Field(description="(N, C) the series.")
    reconstruction: list[list[float | None]] = Field(description="(N, C) the reconstruction.")
    scores: list[float | None] = Field(description="(N,) anomaly score per point.")
    threshold: float
    window: int
    events: list[dict[str, Any]] = Field(
        description="[{start_index, end_index, start, end, peak_score}], inclusive.")


class CaptionResponse(BaseModel):
    run: str
    caption: str
    words: list[str]
    tokens: list[str]
    grid: int = Field(description="G: the attention maps are G x G regions.")
    word_attention: list[list[list[float]]] = Field(description="(W, G, G) one map per word.")
    image: str = Field(description="The picture the model saw, a PNG data URL.")
    score: float


class RunInfo(BaseModel):
    name: str
    kind: str


class RunsResponse(BaseModel):
    runs: list[RunInfo]
    gates_models: list[str] = Field(description="Models the gates view can read text with.")
    limits: dict[str, int]


class RunSummary(BaseModel):
    name: str
    kind: str
    config: dict[str, Any]
    x: str = Field(description="The curves' x axis: step or epoch.")
    curves: dict[str, list[list[float]]] = Field(description="name -> [[x, y], ...]")


# ----------------------------------------------------------------------------- the app

CsvFile = Annotated[UploadFile, File(description="A CSV file with a header line")]
RunName = Annotated[str | None, Form(description="The run's name (default: the first of its "
                                                 "kind)")]


def _safe_name(filename: str | None, default: str) -> str:
    """The upload's base name, reduced to safe characters (it only names the file in errors)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or default).name)[:80]
    return base if base.strip("._") else default


def create_app(run_dirs: Sequence[str | Path] = (), limits: Limits | None = None) -> FastAPI:
    """The studio app serving `run_dirs` (translator, captioner, series autoencoder runs);
    bad run directories -> UserError before anything is served."""
    limits = limits or Limits()
    registry = R.RunRegistry(run_dirs)
    queue = WorkQueue(limits.max_queue)
    app = FastAPI(title="seqlab studio",
                  description="Look inside seqlab models: attention, beam search, LSTM gates, "
                              "anomaly scores, captions. See docs/studio.md.",
                  version="1")
    # translations without details that wait together run as one batch
    translations = Batcher(lambda key, texts: R.translate_many(registry.runs[key[0]], texts,
                                                               *key[1:]))
    app.state.registry, app.state.queue, app.state.limits = registry, queue, limits
    app.state.translations = translations
    app.router.on_shutdown.append(queue.shutdown)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(LookupError)
    async def _lookup_error(request: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc.args[0])})

    @app.exception_handler(QueueFullError)
    async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)},
                            headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = ["{}: {}".format(".".join(str(p) for p in e["loc"] if p != "body"), e["msg"])
                for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": "; ".join(msgs)})

    @app.middleware("http")
    async def _upload_size(request: Request, call_next: Any) -> Any:
        # refuse big uploads before their body is read (the handlers check again after)
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and \
                int(size) > limits.max_upload_bytes + 64 * 1024:
            return JSONResponse(status_code=413, content={"detail": _too_big(int(size))})
        return await call_next(request)

    def _too_big(size: int) -> str:
        return (f"upload too large: {size:,} bytes, the limit is "
                f"{limits.max_upload_bytes:,} bytes")

    async def _read_upload(file: UploadFile) -> bytes:
        data = await file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, _too_big(file.size or len(data)))
        if not data:
            raise HTTPException(400, f"{file.filename or 'file'}: empty upload")
        return data

    def _check_text(text: str, field: str = "text") -> None:
        if len(text) > limits.max_text_chars:
            raise HTTPException(422, f"{field}: {len(text)} characters, at most "
                                     f"{limits.max_text_chars} allowed")

    def _check_beams(num_beams: int) -> None:
        if num_beams > limits.max_beams:
            raise HTTPException(422, f"num_beams: {num_beams}, at most {limits.max_beams}")

    async def _with_csv(file: UploadFile, fn: Callable[[Path], T]) -> T:
        """Run fn(path) on the queue with the upload saved as a temporary CSV file."""
        data = await _read_upload(file)

        def work() -> T:
            with tempfile.TemporaryDirectory(prefix="seqlab-studio-") as d:
                path = Path(d) / _safe_name(file.filename, "upload.csv")
                path.write_bytes(data)
                try:
                    return fn(path)
                except UserError as err:   # name the upload, not the server's temporary path
                    raise UserError(str(err).replace(str(path), path.name)) from None

        return await queue.run(work)

    # ---- the page
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ---- runs
    @app.get("/api/runs", response_model=RunsResponse, summary="The runs served")
    async def list_runs() -> dict[str, Any]:
        return {"runs": [{"name": r.name, "kind": r.kind} for r in registry.runs.values()],
                "gates_models": [R.CHAR_MODEL] + [r.name for r in registry.runs.values()
                                                  if r.kind == R.TRANSLATE],
                "limits": {"max_text_chars": limits.max_text_chars,
                           "max_beams": limits.max_beams,
                           "max_upload_bytes": limits.max_upload_bytes}}

    @app.get("/api/runs/{name}", response_model=RunSummary,
             summary="A run's config and training curves (read fresh: poll while it trains)")
    def run_summary(name: str) -> dict[str, Any]:
        run = registry.runs.get(name)
        if run is None:
            raise LookupError(f"no run named {name!r} (runs: "
                              f"{', '.join(registry.runs) or 'none'})")
        return R.run_summary(run)

    # ---- translate
    @app.post("/api/translate", response_model=TranslateResponse,
              summary="Translate a sentence: n-best, attention, beam tree")
    async def translate(req: TranslateRequest) -> dict[str, Any]:
        _check_text(req.text)
        _check_beams(req.num_beams)
        if req.n_best > req.num_beams:
            raise HTTPException(422, f"n_best: {req.n_best}, at most num_beams="
                                     f"{req.num_beams}")
        run = registry.get(req.run, R.TRANSLATE)
        if req.details:
            return await queue.run(R.translate, run, req.text, req.num_beams,
                                   req.length_penalty, req.n_best, True)
        item = translations.add((run.name, req.num_beams, req.length_penalty, req.n_best),
                                req.text)
        try:
            return await queue.run(translations.job, item)
        except QueueFullError:
            translations.discard(item)
            raise

    # ---- gates
    @app.post("/api/gates", response_model=GatesResponse,
              summary="LSTM gates over a text (built-in char model or a translator's encoder)")
    async def gates(req: GatesRequest) -> dict[str, Any]:
        _check_text(req.text)
        if req.model != R.CHAR_MODEL:
            registry.get(req.model, R.TRANSLATE)       # 404 before queueing
        return await queue.run(R.gates_text, registry, req.model, req.text, req.layer,
                               req.direction)

    @app.post("/api/gates/series", response_model=GatesResponse,
              summary="A series autoencoder's encoder gates over one window of a CSV")
    async def gates_series(file: CsvFile, run: RunName = None,
                           start: Annotated[int, Form(ge=0, description="First point")] = 0,
                           layer: Annotated[int, Form(ge=0)] = 0) -> dict[str, Any]:
        r = registry.get(run, R.SERIES)
        return await _with_csv(file, lambda p: R.gates_series(r, p, start, layer))

    # ---- series
    @app.post("/api/series/score", response_model=SeriesResponse,
              summary="Score a CSV: reconstruction, per-point score, threshold, events")
    async def series_score(file: CsvFile, run: RunName = None) -> dict[str, Any]:
        r = registry.get(run, R.SERIES)
        return await _with_csv(file, lambda p: R.series_scores(r, p))

    # ---- caption
    @app.post("/api/caption", response_model=CaptionResponse,
              summary="Caption an image, with each word's attention over the image")
    async def caption(file: Annotated[UploadFile, File(description="An image (PNG, JPEG, ...)")],
                      run: RunName = None,
                      num_beams: Annotated[int, Form(ge=1)] = 5) -> dict[str, Any]:
        _check_beams(num_beams)
        r = registry.get(run, R.CAPTION)
        data = await _read_upload(file)
        name = _safe_name(file.filename, "image")

        def work() -> dict[str, Any]:
            return R.caption(r, R.read_image(data, name, limits.max_image_pixels), num_beams)

        return await queue.run(work)

    @app.get("/api/health", summary="Queue state")
    async def health() -> dict[str, int]:
        return {"waiting": queue.waiting, "max_queue": queue.max_waiting,
                "served": queue.served}

    return app


def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, Any, int]:
    """Start uvicorn on a background thread (tests, benchmarks); returns (server, thread, port).
    Stop with `server.should_exit = True; thread.join()`."""
    import socket
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=512))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, port
