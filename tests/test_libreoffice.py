"""The built-in LibreOffice help corpus: page parsing, switch handling, alignment, caching."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from seqlab.errors import UserError
from seqlab.translate.corpora import load_corpus
from seqlab.translate.data import read_tsv
from seqlab.translate.libreoffice import (
    CORPUS_NAME,
    META_NAME,
    PACKAGES,
    align_help_trees,
    align_pages,
    default_cache_dir,
    extract_paragraphs,
    fetch_debs,
    prepare_libreoffice_help,
)

HEAD = ('<!DOCTYPE html>\n<html lang="{lang}" dir="ltr"><head><base href="../../../../">'
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        '<title>Help</title><script type="text/javascript" src="help.js"></script></head>\n'
        '<body><header><p dir="auto">LibreOffice 7.4 Help</p></header>\n'
        '<div id="DisplayArea" itemprop="softwareHelp">\n')
FOOT = ('</div>\n<footer><div id="DEBUG" class="debug"><p id="par_debug" dir="auto">This page '
        'is: text/shared/a.xhp</p></div></footer></body></html>\n')


def _sys(n: int, **cases: str) -> str:
    """An inline system switch as the help pages write it (all cases hidden)."""
    spans = "".join(f'<span hidden="true" id="{k}textsharedaxml_{n}"'
                    f'{"" if k == "default" else f" class={chr(34)}{k}{chr(34)}"}>{v}</span>'
                    for k, v in cases.items())
    return f'<span id="swlnsystextsharedaxml_{n}" class="switchinline">{spans}</span>'


def _appl(n: int, block: bool = False, **cases: str) -> str:
    spans = "".join(f'<span hidden="true" id="{k}textsharedaxml_{n}"'
                    f'{"" if k == "default" else f" class={chr(34)}{k}{chr(34)}"}>{v}</span>'
                    for k, v in cases.items())
    cls = "switch" if block else "switchinline"
    return f'<span id="swlnappltextsharedaxml_{n}" class="{cls}">{spans}</span>'


PAGE_A = {
    "en": [
        '<h1 id="hd_id1" dir="auto">\n<a name="x"></a>Turning off URL   Recognition\n</h1>',
        '<p id="par_id2" class="paragraph">Press '
        + _sys(1, MAC="Command\n", default="Ctrl") + '+Z to undo.</p>',
        '<p id="par_id3">Paths use ' + _sys(2, WIN="\\", UNIX="/", default=":")
        + ' as separator.</p>',
        _sys(3, MAC='<p id="par_id4">Mac only paragraph.</p>'),
        '<p id="par_id5">For details see ' + _appl(4, WRITER='<a href="x">Editing Tables</a>')
        + '.</p>',
        _appl(5, block=True, CALC='<h2 id="hd_id6">Formatted Display</h2>',
              IMPRESS='<p id="par_id7">Slides only.</p>'),
        '<p id="par_id8"><img src="media/x.svg" alt="Icon" style="width:1cm"></p>',
        '<p id="par_id9">LibreOffice Calc</p>',
        '<p id="par_id10">1 + 2 = 3</p>',
        '<p id="par_id11">Choose <span class="menuitem">Tools - Options</span>.</p>',
        '<p id="par_id12">Only in English.</p>',
        '<table border="1"><tr><td><p id="par_id13">Line one<br>line two</p></td></tr></table>',
        '<p id="par_id14">Repeated id, first.</p><p id="par_id14">Repeated id, second.</p>',
        '<pre dir="auto">Sub Main\n  code is not text\nEnd Sub</pre>',
    ],
    "fr": [
        '<h1 id="hd_id1" dir="auto">\n<a name="x"></a>Désactiver la reconnaissance des URL\n</h1>',
        '<p id="par_id2" class="paragraph">Appuyez sur '
        + _sys(1, MAC="Commande\n", default="Ctrl") + '+Z pour annuler\u00a0!</p>',
        '<p id="par_id3">Les chemins utilisent ' + _sys(2, WIN="\\", UNIX="/", default=":")
        + ' comme séparateur.</p>',
        _sys(3, MAC='<p id="par_id4">Paragraphe pour Mac.</p>'),
        '<p id="par_id5">Voir ' + _appl(4, WRITER='<a href="x">Édition de tableaux</a>')
        + '.</p>',
        _appl(5, block=True, CALC='<h2 id="hd_id6">Affichage formaté</h2>',
              IMPRESS='<p id="par_id7">Diapos uniquement.</p>'),
        '<p id="par_id8"><img src="media/x.svg" alt="Icône"></p>',
        '<p id="par_id9">LibreOffice Calc</p>',
        '<p id="par_id10">1 + 2 = 3</p>',
        '<p id="par_id11">Choisissez <span class="menuitem">Outils - Options</span>.</p>',
        '<table border="1"><tr><td><p id="par_id13">Ligne un<br/>ligne deux</p></td></tr></table>',
        '<p id="par_id14">Id répété, premier.</p><p id="par_id14">Id répété, second.</p>',
        '<pre dir="auto">Sub Main\n  code is not text\nEnd Sub</pre>',
    ],
}
PAGE_B = {
    "en": ['<p id="par_id11">Choose <span class="menuitem">Tools - Options</span>.</p>',
           '<p id="par_id20">Another paragraph.</p>'],
    "fr": ['<p id="par_id11">Choisissez <span class="menuitem">Outils - Options</span>.</p>',
           '<p id="par_id20">Un autre paragraphe.</p>'],
}
EXPECTED = [
    ("Turning off URL Recognition", "Désactiver la reconnaissance des URL", "a.html#hd_id1"),
    ("Press Ctrl+Z to undo.", "Appuyez sur Ctrl+Z pour annuler !", "a.html#par_id2"),
    ("Paths use / as separator.", "Les chemins utilisent / comme séparateur.", "a.html#par_id3"),
    ("For details see Editing Tables.", "Voir Édition de tableaux.", "a.html#par_id5"),
    ("Formatted Display", "Affichage formaté", "a.html#hd_id6"),
    ("Slides only.", "Diapos uniquement.", "a.html#par_id7"),
    ("Choose Tools - Options.", "Choisissez Outils - Options.", "a.html#par_id11"),
    ("Line one line two", "Ligne un ligne deux", "a.html#par_id13"),
    ("Repeated id, first.", "Id répété, premier.", "a.html#par_id14"),
    ("Repeated id, second.", "Id répété, second.", "a.html#par_id14#2"),
    ("Another paragraph.", "Un autre paragraphe.", "b.html#par_id20"),
]


def _page(lang: str, parts: list[str]) -> str:
    return HEAD.format(lang=lang) + "\n".join(parts) + FOOT


def _write_trees(root: Path) -> dict[str, Path]:
    """Help trees laid out as in the Debian packages; returns the two `text` folders."""
    dirs = {}
    for lang, code in (("en", "en-US"), ("fr", "fr")):
        text = root / lang / "usr/share/libreoffice/help" / code / "text"
        (text / "shared/guide").mkdir(parents=True)
        (text / "shared/guide/a.html").write_text(_page(code, PAGE_A[lang]), encoding="utf-8")
        (text / "shared/guide/b.html").write_text(_page(code, PAGE_B[lang]), encoding="utf-8")
        dirs[lang] = text
    # A page that exists only in English.
    (dirs["en"] / "shared/c.html").write_text(_page("en-US", ['<p id="p1">Lonely.</p>']))
    return dirs


def _expected_with_paths() -> list[tuple[str, str, str]]:
    return [(en, fr, "shared/guide/" + w) for en, fr, w in EXPECTED]


def test_extract_paragraphs_switches_and_text() -> None:
    paras = dict(extract_paragraphs(_page("en-US", PAGE_A["en"])))
    assert paras["par_id2"] == "Press Ctrl+Z to undo."              # default, not Mac's
    assert paras["par_id3"] == "Paths use / as separator."          # the UNIX case
    assert "par_id4" not in paras                                   # Mac-only paragraph
    assert paras["par_id5"] == "For details see Editing Tables."    # appl: first case
    assert paras["hd_id6"] == "Formatted Display" and paras["par_id7"] == "Slides only."
    assert paras["par_id8"] == ""                                   # image only
    assert "par_debug" not in paras                                 # outside DisplayArea
    assert not any("code is not text" in t for t in paras.values())


def test_align_pages_pairs_by_id_and_occurrence() -> None:
    pairs = align_pages(_page("en-US", PAGE_A["en"]), _page("fr", PAGE_A["fr"]))
    ids = [pid for pid, _, _ in pairs]
    assert "par_id12" not in ids                                    # no French element
    assert ids.count("par_id14") == 1 and "par_id14#2" in ids
    assert dict((p, (e, f)) for p, e, f in pairs)["par_id14#2"] == (
        "Repeated id, second.", "Id répété, second.")


def test_align_help_trees_drop_rules(tmp_path: Path) -> None:
    dirs = _write_trees(tmp_path)
    pairs, stats = align_help_trees(dirs["en"], dirs["fr"])
    assert pairs == _expected_with_paths()
    assert stats["pages_en"] == 3 and stats["pages_both"] == 2
    assert stats["dropped_empty"] == 1          # par_id8 (image only)
    assert stats["dropped_no_letter"] == 1      # par_id10
    assert stats["dropped_identical"] == 1      # par_id9, untranslated
    assert stats["dropped_duplicate"] == 1      # par_id11 again on page b
    assert stats["missing_in_fr"] == 2          # par_id12 and the English-only page
    assert stats["pairs"] == len(EXPECTED)


def _build_deb(tree: Path, package: str, out_dir: Path) -> Path:
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 1:0.1-1\nArchitecture: all\n"
        "Maintainer: seqlab tests <t@example.org>\nDescription: test help pages\n")
    deb = out_dir / f"{package}_1%3a0.1-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                    reason="needs dpkg/dpkg-deb to build and unpack .deb files")
def test_prepare_from_debs_and_cache(tmp_path: Path) -> None:
    """End to end on real .deb files built here: unpack, align, cache, reuse the cache."""
    _write_trees(tmp_path / "trees")
    deb_dir = tmp_path / "cache" / CORPUS_NAME / "debs"
    deb_dir.mkdir(parents=True)
    for lang, pkg in PACKAGES.items():
        _build_deb(tmp_path / "trees" / lang, pkg, deb_dir)
    tsv = prepare_libreoffice_help(tmp_path / "cache")
    rows = [tuple(line.split("\t")) for line in tsv.read_text(encoding="utf-8").splitlines()]
    assert rows == _expected_with_paths()
    pt = read_tsv(tsv)
    assert pt.src == [e for e, _, _ in EXPECTED] and pt.skipped == 0
    meta = json.loads((tsv.parent / META_NAME).read_text())
    assert meta["pairs"] == len(EXPECTED) and meta["packages"][PACKAGES["fr"]] == "1:0.1-1"
    assert not list(tsv.parent.glob("unpacked-*"))      # trees removed, debs kept
    # A second call reads the cache: no unpacking needed, even without the packages.
    mtime = tsv.stat().st_mtime_ns
    for deb in deb_dir.glob("*.deb"):
        deb.rename(tmp_path / deb.name)
    assert prepare_libreoffice_help(tmp_path / "cache") == tsv
    assert tsv.stat().st_mtime_ns == mtime
    # Cache from older extraction rules is rebuilt (from the kept .debs).
    for deb in tmp_path.glob("*.deb"):
        deb.rename(deb_dir / deb.name)
    (tsv.parent / META_NAME).write_text(json.dumps({**meta, "extract_version": 0}))
    tsv.write_text("stale\tstale\n")
    prepare_libreoffice_help(tmp_path / "cache")
    assert read_tsv(tsv).src == pt.src


def test_corrupt_deb_is_a_user_error(tmp_path: Path) -> None:
    deb_dir = tmp_path / CORPUS_NAME / "debs"
    deb_dir.mkdir(parents=True)
    for pkg in PACKAGES.values():
        (deb_dir / f"{pkg}_1.0_all.deb").write_bytes(b"not an archive")
    assert set(fetch_debs(deb_dir)) == {"en", "fr"}      # present: no download attempted
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg not installed")
    with pytest.raises(UserError, match="dpkg -x"):
        prepare_libreoffice_help(tmp_path)


@pytest.mark.slow
def test_real_debian_packages(tmp_path: Path) -> None:
    """The real corpus from Debian's packages: ~34k pairs, sensible content, fixed split."""
    deb_dir = tmp_path / CORPUS_NAME / "debs"
    deb_dir.mkdir(parents=True)
    # Reuse packages already downloaded into the user's cache; else download them.
    for deb in (default_cache_dir() / CORPUS_NAME / "debs").glob("*.deb"):
        shutil.copy(deb, deb_dir / deb.name)
    try:
        fetch_debs(deb_dir)
    except UserError as err:
        pytest.skip(f"LibreOffice help packages not available: {err}")
    tsv = prepare_libreoffice_help(tmp_path)
    meta = json.loads((tsv.parent / META_NAME).read_text())
    assert 30_000 <= meta["pairs"] <= 38_000
    pt = read_tsv(tsv)
    assert len(pt) == meta["pairs"] and pt.skipped == 0
    pairs = dict(zip(pt.src, pt.tgt, strict=True))
    key = ("When you are typing and notice that a text has just been automatically converted "
           "into a hyperlink, press Ctrl+Z to undo this formatting.")
    assert key in pairs and "Ctrl+Z" in pairs[key]
    assert not any(s.startswith("Press Command") for s in pt.src)     # Mac-only text skipped
    assert all(s != t for s, t in pairs.items())
    french = sum(any(c in t for c in "éèàçù") for t in pt.tgt) / len(pt)
    assert french > 0.5
    corpus = load_corpus("libreoffice-help", "en", "fr", cache_dir=tmp_path)
    assert (len(corpus.dev), len(corpus.test)) == (1000, 1000)
    assert len(corpus.train) == len(pt) - 2000
    assert not set(corpus.train.src) & set(corpus.test.src)
