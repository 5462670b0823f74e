"""`seqlab studio RUN_DIR ...`: serve the studio page and its JSON API (docs/studio.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from seqlab.errors import UserError


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@click.command("studio")
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the default is reachable from this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--max-queue", type=click.IntRange(1, 100_000), default=256, show_default=True,
              help="Model requests allowed to wait at once; more are answered 503.")
@click.option("--threads", type=click.IntRange(1, 512), default=1, show_default=True,
              help="torch threads for the model calls (they run one at a time; one thread "
                   "leaves the other cores to the web server and stalls least on a busy "
                   "machine; more help large models on an idle one).")
def studio(run_dirs: tuple[Path, ...], host: str, port: int, max_queue: int,
           threads: int) -> None:
    """Serve a page to look inside RUN_DIRs (translator, captioner, series autoencoder runs)
    and the built-in gates model: attention, beam search, gates, anomaly scores, captions."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise UserError(f"seqlab studio needs the 'studio' extra ({err.name} is missing): "
                        "pip install 'seqlab[studio]'") from None
    import torch

    from seqlab.studio.app import Limits, create_app

    app = create_app(run_dirs, Limits(max_queue=max_queue))
    torch.set_num_threads(threads)
    if port == 0:
        port = _free_port(host)
    names = ", ".join(f"{r.name} ({r.kind})" for r in app.state.registry.runs.values())
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"seqlab studio: http://{shown}:{port}/  (runs: {names or 'none'}; "
               f"API docs at /docs; Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
