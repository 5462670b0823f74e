"""`seqlab studio`: a web page to look inside trained models, live (see docs/studio.md).

The app lives in `studio.app` (FastAPI; the `studio` extra), everything it takes from the rest
of seqlab in `studio.runs`, the page in `studio/static/` (plain HTML, JS and SVG/canvas).
"""
