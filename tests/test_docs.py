"""The docs stay true: generated pages match the code, and the site builds with warnings as errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "tools"))

import gen_docs  # noqa: E402


def test_generated_pages_are_current(capsys):
    # CLI reference, API reference, benchmark tables and notebook parameters come from the code
    assert gen_docs.main(["--check"]) == 0, capsys.readouterr().err


def test_cli_reference_covers_every_subcommand():
    from curator_widgets.cli import build_parser

    text = (DOCS / "cli.md").read_text()
    for path, _ in gen_docs._walk(build_parser(), ["curator"]):
        if len(path) > 1:
            assert f"## {' '.join(path)}\n" in text, path


def test_benchmark_tables_are_gathered_from_area_pages(tmp_path, monkeypatch):
    page = tmp_path / "gibs.md"
    page.write_text("# GIBS\n\n## Options\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## Benchmarks\n\nThroughput:\n\n"
                    "| concurrency | tiles/s |\n|---|---|\n| 1 | 10 |\n| 16 | 140 |\n\n```bash\n"
                    "python benchmarks/gibs_download.py\n# a comment line in a code block is no heading\n```\n\n"
                    "### Circles\n\n| n | accuracy |\n|---|---|\n| 500 | 0.91 |\n")
    monkeypatch.setattr(gen_docs, "DOCS", tmp_path)
    monkeypatch.setattr(gen_docs, "AREA_PAGES", [("gibs.md", "GIBS imagery")])
    out = gen_docs.benchmark_tables()
    assert "| 16 | 140 |" in out and "python benchmarks/gibs_download.py" in out
    assert "### Circles" in out and "| 500 | 0.91 |" in out  # a sub-section of a benchmark section counts
    assert "| 1 | 2 |" not in out  # a table outside a benchmark section is not a benchmark
    assert "(gibs.md#benchmarks)" in out


def test_concepts_figure_is_drawn_by_the_package(tmp_path):
    import make_figures

    out = tmp_path / "diversity.png"
    assert make_figures.main(["--out", str(out)]) == 0
    assert out.stat().st_size > 20_000
    assert "(images/concepts_diversity.png)" in (DOCS / "concepts.md").read_text()


def test_pages_link_only_to_existing_images():
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.relative_to(ROOT)} shows missing {target}"


def test_each_widget_page_shows_a_browser_screenshot():
    for name in ("region_picker", "embedding_view", "sample_gallery", "swipe_labeler"):
        text = (DOCS / "widgets" / f"{name}.md").read_text()
        assert f"](../images/{name}.png)" in text
        assert (DOCS / "images" / f"{name}.png").stat().st_size > 10_000, "screenshot looks empty"


def test_nav_lists_every_page():
    import yaml

    cfg = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def files(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for x in node:
                yield from files(x)
        elif isinstance(node, dict):
            for x in node.values():
                yield from files(x)

    listed = set(files(cfg["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    pages |= {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert pages <= listed, f"pages missing from the nav in mkdocs.yml: {sorted(pages - listed)}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mkdocs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text()
    assert "curator_widgets.workspace.Workspace" in api  # docstrings rendered by mkdocstrings
    assert (site / "notebooks" / "00_quickstart" / "index.html").exists()
    assert (site / "images" / "concepts_diversity.png").exists()
    assert not (ROOT / ".cache" / "mkdocs-jupyter").exists(), "the docs build must not write caches into the repo"
