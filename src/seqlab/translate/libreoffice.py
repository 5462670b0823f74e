"""The built-in offline corpus: English-French paragraphs of the LibreOffice help.

Source: Debian's `libreoffice-help-en-us` and `libreoffice-help-fr` packages (MPL-2.0), fetched
with `apt-get download` (after `apt-get update` if the package lists are missing) and unpacked
with `dpkg -x`. They ship the help as HTML pages rendered from LibreOffice's .xhp sources, one
per help topic, under usr/share/libreoffice/help/<lang>/text/<module>/<topic>.html; the English
and French page of a topic have the same relative path, and each paragraph or heading keeps the
element id of its .xhp source (`<p id="par_id3149233">`, `<h2 id="hd_id3154306">`). So:

Alignment: for each page present in both languages, the text of every `p`/`h1`..`h6` element
with an id in the English page is paired with the element of the same id in the French page
(an id repeated within a page is paired by occurrence). Only the page body (`DisplayArea`) is
read; text inside a paragraph includes its inline elements (links, menu items, ...) but not
images or code blocks.

Switches: the pages carry variants that the help viewer's JavaScript reveals; all are
`hidden="true"` in the file. We render one fixed view, that of a Linux user:
- system switches (`<span class="switch(inline)" id="swlnsys...">`, cases MAC/WIN/UNIX/default):
  the UNIX case if there is one, else the default case. Mac-only and Windows-only text
  ("Command" for "Ctrl", "LibreOffice - Preferences" for "Tools - Options") is skipped,
  including whole paragraphs inside such cases.
- application switches (`id="swlnappl..."`, cases WRITER/CALC/IMPRESS/.../default): inside a
  paragraph, the default case, else the first case (so "see <WRITER: Editing Tables>" keeps its
  object). Paragraphs with their own id inside any application case are kept as pairs of their
  own: they are ordinary module-specific text, not platform-specific.
- any other hidden element is skipped.

Normalisation: all runs of whitespace (including no-break spaces, which French typography puts
before ":;!?") become one space; ends are stripped.

Dropped, in this order (counts are in the cache's JSON metadata):
1. pairs with an empty side (anchors, icon-only cells, ids missing in French);
2. pairs whose English has no letter (numbers, symbols, formulas like "=A1+B1");
3. identical English and French: text left untranslated, or language-neutral names/code;
   a translator learns nothing from these but to copy;
4. exact duplicate pairs (the same paragraph embedded in several pages): the first is kept,
   pages being read in sorted path order.
The result (33,986 pairs from the Debian 12 packages 4:7.4.7) is cached as a TSV
`english<TAB>french<TAB>page#id` in `$SEQLAB_CACHE/libreoffice-help/` (default
~/.cache/seqlab), written atomically, with a JSON of counts beside it; later loads read the
cache. The downloaded .debs stay in the cache (so a rebuild needs no network); the unpacked
trees are deleted once the TSV is written. `corpora.load_corpus("libreoffice-help")` splits
it (see there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from seqlab.errors import UserError
from seqlab.io import atomic_path, write_json_atomic

PACKAGES = {"en": "libreoffice-help-en-us", "fr": "libreoffice-help-fr"}
HELP_DIRS = {"en": "en-US", "fr": "fr"}
HELP_ROOT = Path("usr/share/libreoffice/help")
CORPUS_NAME = "libreoffice-help"
TSV_NAME = "libreoffice-help.en-fr.tsv"
META_NAME = "libreoffice-help.en-fr.json"
# Bump when the extraction rules change, so stale caches are rebuilt.
EXTRACT_VERSION = 1

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}
_PARA_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK_TAGS = {"div", "li", "ul", "ol", "table", "tr", "td", "th", "pre", "section"}
_SKIP_TAGS = {"script", "style", "pre", "head", "title", "noscript"}


# --- HTML -> a small element tree --------------------------------------------------------------
class _Node:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node | str] = []


class _TreeBuilder(HTMLParser):
    """Builds a `_Node` tree; tolerates void elements and stray end tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = _Node(tag, {k: (v if v is not None else "") for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(_Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def _find_id(node: _Node, wanted: str) -> _Node | None:
    todo = [node]
    while todo:
        n = todo.pop()
        if n.attrs.get("id") == wanted:
            return n
        todo.extend(c for c in reversed(n.children) if isinstance(c, _Node))
    return None


def normalize_space(text: str) -> str:
    """Collapse all whitespace runs (incl. no-break spaces) to one space and strip."""
    return " ".join(text.split())


def _selected_case(switch: _Node) -> _Node | None:
    """The case of a help switch shown in our fixed Linux, module-neutral view."""
    cases = [c for c in switch.children if isinstance(c, _Node) and "hidden" in c.attrs]
    sid = switch.attrs.get("id", "")

    def first(prefix: str) -> _Node | None:
        return next((c for c in cases if c.attrs.get("id", "").startswith(prefix)
                     or c.attrs.get("class", "") == prefix), None)

    if sid.startswith("swlnsys"):
        return first("UNIX") or first("default")
    return first("default") or (cases[0] if cases else None)


def extract_paragraphs(html: str) -> list[tuple[str, str]]:
    """(element id, normalised text) of every paragraph/heading with an id, in page order.

    Applies the switch rules of the module docstring. Empty texts are returned too (the caller
    decides what to drop); an id repeated in the page appears once per occurrence.
    """
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    body = _find_id(builder.root, "DisplayArea") or builder.root
    out: list[tuple[str, str]] = []

    def walk(node: _Node, buf: list[str] | None) -> None:
        """Add `node`'s visible text to `buf` (None: outside any paragraph, text is dropped);
        record paragraphs with ids into `out`."""
        for child in node.children:
            if isinstance(child, str):
                if buf is not None:
                    buf.append(child)
                continue
            tag, attrs = child.tag, child.attrs
            cls = attrs.get("class", "")
            if tag in _SKIP_TAGS:
                continue
            if cls in ("switch", "switchinline") and attrs.get("id", "").startswith("swln"):
                chosen = _selected_case(child)
                system = attrs["id"].startswith("swlnsys")
                for case in child.children:
                    if isinstance(case, str):
                        if buf is not None:
                            buf.append(case)
                    elif case is chosen:
                        walk(case, buf)
                    elif not system and "hidden" in case.attrs:
                        walk(case, None)   # module-specific: keep its own paragraphs only
                    elif "hidden" not in case.attrs:
                        walk(case, buf)
                continue
            if "hidden" in attrs:
                continue
            if tag in _PARA_TAGS and attrs.get("id"):
                slot = len(out)
                out.append((attrs["id"], ""))
                inner: list[str] = []
                walk(child, inner)
                out[slot] = (attrs["id"], normalize_space("".join(inner)))
                continue
            if buf is not None and (tag in _BLOCK_TAGS or tag == "br"):
                buf.append(" ")
            walk(child, buf)
            if buf is not None and tag in _BLOCK_TAGS:
                buf.append(" ")

    walk(body, None)
    return out


def _keyed(paras: list[tuple[str, str]]) -> dict[str, str]:
    """id -> text, with repeated ids keyed "id#2", "id#3", ... by occurrence."""
    seen: dict[str, int] = {}
    out: dict[str, str] = {}
    for pid, text in paras:
        k = seen[pid] = seen.get(pid, 0) + 1
        out[pid if k == 1 else f"{pid}#{k}"] = text
    return out


def align_pages(en_html: str, fr_html: str) -> list[tuple[str, str, str]]:
    """(element id, English, French) for the ids of the English page also in the French page,
    in English page order. No filtering here."""
    en, fr = _keyed(extract_paragraphs(en_html)), _keyed(extract_paragraphs(fr_html))
    return [(pid, text, fr[pid]) for pid, text in en.items() if pid in fr]


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def align_help_trees(en_dir: Path, fr_dir: Path, progress: bool = False
                     ) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """Align two unpacked help trees (the `<lang>/text` folders, or any folders of .html pages
    with the same relative paths); apply the drop rules of the module docstring.

    Returns ([(english, french, "page#id")], counts of pages/paragraphs/drops).
    """
    en_pages = sorted(p.relative_to(en_dir).as_posix() for p in en_dir.rglob("*.html"))
    stats = {"pages_en": len(en_pages), "pages_both": 0, "paragraphs_en": 0,
             "missing_in_fr": 0, "dropped_empty": 0, "dropped_no_letter": 0,
             "dropped_identical": 0, "dropped_duplicate": 0, "pairs": 0}
    pairs: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    from tqdm.auto import tqdm

    for rel in tqdm(en_pages, desc="aligning help pages", unit="page", disable=not progress,
                    leave=False):
        fr_path = fr_dir / rel
        en_html = (en_dir / rel).read_text(encoding="utf-8", errors="replace")
        en_count = len(extract_paragraphs(en_html))
        stats["paragraphs_en"] += en_count
        if not fr_path.is_file():
            stats["missing_in_fr"] += en_count
            continue
        stats["pages_both"] += 1
        aligned = align_pages(en_html, fr_path.read_text(encoding="utf-8", errors="replace"))
        stats["missing_in_fr"] += en_count - len(aligned)
        for pid, en, fr in aligned:
            if not en or not fr:
                stats["dropped_empty"] += 1
            elif not _has_letter(en):
                stats["dropped_no_letter"] += 1
            elif en == fr:
                stats["dropped_identical"] += 1
            elif (en, fr) in seen:
                stats["dropped_duplicate"] += 1
            else:
                seen.add((en, fr))
                pairs.append((en, fr, f"{rel}#{pid}"))
    stats["pairs"] = len(pairs)
    return pairs, stats


# --- fetching and caching ----------------------------------------------------------------------
def default_cache_dir() -> Path:
    """$SEQLAB_CACHE, else ~/.cache/seqlab."""
    env = os.environ.get("SEQLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "seqlab"


_WHERE = ("get the Debian packages libreoffice-help-en-us and libreoffice-help-fr "
          "(e.g. `apt-get download libreoffice-help-en-us libreoffice-help-fr` on a Debian/Ubuntu "
          "machine, or from packages.debian.org) and put the two .deb files in {dir}")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _find_debs(deb_dir: Path) -> dict[str, Path]:
    found = {}
    for lang, pkg in PACKAGES.items():
        debs = sorted(deb_dir.glob(f"{pkg}_*.deb"))
        if debs:
            found[lang] = debs[-1]
    return found


def fetch_debs(deb_dir: Path) -> dict[str, Path]:
    """The two .deb files in `deb_dir`, downloaded with `apt-get download` if not there yet."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    found = _find_debs(deb_dir)
    missing = [PACKAGES[lang] for lang in PACKAGES if lang not in found]
    if not missing:
        return found
    if shutil.which("apt-get") is None:
        raise UserError(f"LibreOffice help corpus: apt-get not found; {_WHERE.format(dir=deb_dir)}")
    # Download into a temp dir and move complete files in, so no partial .deb is ever cached.
    with tempfile.TemporaryDirectory(dir=deb_dir, prefix=".download.") as tmp:
        res = _run(["apt-get", "download", *missing], Path(tmp))
        if res.returncode != 0:
            # A fresh machine may have no package lists yet.
            upd = _run(["apt-get", "update"], Path(tmp))
            res = _run(["apt-get", "download", *missing], Path(tmp))
            if res.returncode != 0:
                why = (res.stderr or upd.stderr).strip().splitlines()
                raise UserError(f"LibreOffice help corpus: `apt-get download {' '.join(missing)}` "
                                f"failed ({why[-1] if why else 'no output'}); "
                                f"{_WHERE.format(dir=deb_dir)}")
        for deb in Path(tmp).glob("*.deb"):
            os.replace(deb, deb_dir / deb.name)
    found = _find_debs(deb_dir)
    if len(found) != len(PACKAGES):
        raise UserError(f"LibreOffice help corpus: download gave no .deb for "
                        f"{', '.join(missing)}; {_WHERE.format(dir=deb_dir)}")
    return found


def unpack_deb(deb: Path, dest: Path) -> Path:
    """`dpkg -x deb dest` into a temp dir renamed to `dest` when complete; returns dest."""
    if dest.is_dir():
        return dest
    if shutil.which("dpkg") is None:
        raise UserError(f"{deb}: dpkg not found, cannot unpack the LibreOffice help package")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        res = _run(["dpkg", "-x", str(deb), str(tmp)], dest.parent)
        if res.returncode != 0:
            raise UserError(f"{deb}: `dpkg -x` failed ({res.stderr.strip()[-200:]}); delete the "
                            "file to download it again")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _deb_version(deb: Path) -> str:
    # name_version_arch.deb, with ":" (epoch) escaped as %3a by apt.
    parts = deb.name.split("_")
    return parts[1].replace("%3a", ":") if len(parts) >= 3 else "unknown"


def prepare_libreoffice_help(cache_dir: str | os.PathLike[str] | None = None,
                             progress: bool = True) -> Path:
    """Path of the prepared English-French TSV, building it on first use.

    Downloads and unpacks the two Debian packages into `cache_dir/libreoffice-help/` (default
    `default_cache_dir()`), aligns the pages, writes the TSV and a JSON of counts atomically.
    If the TSV exists (and was made by the current extraction rules), it is returned at once.
    progress: say each stage on stderr while building (download, unpack, align with a bar).
    """
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / CORPUS_NAME
    tsv, meta_path = root / TSV_NAME, root / META_NAME
    if tsv.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text())["extract_version"] == EXTRACT_VERSION:
                return tsv
        except (ValueError, KeyError, OSError):
            pass  # stale or corrupt metadata: rebuild
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{root}: cannot create the corpus cache ({err.strerror}); set "
                        "SEQLAB_CACHE to a writable directory") from None
    def say(msg: str) -> None:
        if progress:
            print(f"LibreOffice help corpus (built once, cached in {root}): {msg}",
                  file=sys.stderr, flush=True)

    if len(_find_debs(root / "debs")) < len(PACKAGES):
        say(f"downloading {' and '.join(PACKAGES.values())} (apt-get download, ~5 MB)")
    debs = fetch_debs(root / "debs")
    say("unpacking the two packages (dpkg -x)")
    trees = {lang: unpack_deb(deb, root / f"unpacked-{lang}")
             for lang, deb in debs.items()}
    en_dir = trees["en"] / HELP_ROOT / HELP_DIRS["en"] / "text"
    fr_dir = trees["fr"] / HELP_ROOT / HELP_DIRS["fr"] / "text"
    for d in (en_dir, fr_dir):
        if not d.is_dir():
            raise UserError(f"{d}: not found in the unpacked package; the package layout changed")
    pairs, stats = align_help_trees(en_dir, fr_dir, progress=progress)
    say(f"{len(pairs):,} English-French pairs")
    with atomic_path(tsv) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for en, fr, where in pairs:
            f.write(f"{en}\t{fr}\t{where}\n")
    meta: dict[str, Any] = {
        "extract_version": EXTRACT_VERSION,
        "packages": {PACKAGES[lang]: _deb_version(deb) for lang, deb in debs.items()},
        "license": "MPL-2.0 (LibreOffice help)",
        **stats,
    }
    write_json_atomic(meta_path, meta)
    # The unpacked trees (~60 MB) are only needed to rebuild; the .debs (~5 MB) are kept.
    for tree in trees.values():
        shutil.rmtree(tree, ignore_errors=True)
    return tsv


def iter_cached_pairs(tsv: Path) -> Iterator[tuple[str, str]]:
    """(english, french) pairs of a prepared TSV (for inspection; loaders use data.read_tsv)."""
    with open(tsv, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            yield cols[0], cols[1]
