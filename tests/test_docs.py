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


def test_bench_blocks_render_from_the_committed_json_with_the_benchmarks_own_code(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(gen_docs, "RESULTS", tmp_path)
    rows = [{"n": 500, "random_acc_mean": 0.6, "random_acc_std": 0.01, "random_plain_acc_mean": 0.9,
             "diverse_acc_mean": 0.85, "diverse_acc_std": 0.02, "diverse_plain_acc_mean": 0.96,
             "random_class_std_mean": 39.5, "random_class_std_std": 1.2, "diverse_class_std_mean": 28.3,
             "diverse_class_std_std": 0.8}]
    (tmp_path / "circles.json").write_text(json.dumps({"benchmark": "circles", "table": rows, "seeds": [0, 1],
                                                       "random_points_to_match_diverse": 1200.0,
                                                       "other_classifiers": {}, "commit": "abcdef1234567"}))
    page = "# S\n\n<!-- bench:circles/main:begin -->\nstale\n<!-- bench:circles/main:end -->\n"
    out = gen_docs.bench_blocks(page)
    assert "stale" not in out and "| 500 | 0.600 +- 0.010 (0.90) | 0.850 +- 0.020 (0.96) |" in out
    assert "over 2 seeds (commit `abcdef1234`)" in out
    with pytest.raises(SystemExit, match="has no table 'nope'"):
        gen_docs.bench_blocks("<!-- bench:circles/nope:begin -->\n<!-- bench:circles/nope:end -->")
    with pytest.raises(SystemExit, match="run its benchmark"):
        gen_docs.bench_blocks("<!-- bench:ghost/main:begin -->\n<!-- bench:ghost/main:end -->")


def _table_spans(text: str) -> list[tuple[int, str]]:
    """(line number, first line) of each markdown table in a page, code blocks skipped."""
    out, in_code, lines = [], False, text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif (not in_code and line.lstrip().startswith("|") and i + 1 < len(lines)
              and re.match(r"^\s*\|?\s*:?-{2,}", lines[i + 1]) and not (i and lines[i - 1].lstrip().startswith("|"))):
            out.append((i, line))
    return out


def test_every_benchmark_table_in_the_area_pages_is_generated_from_committed_results():
    # a number in a benchmark section that no committed JSON produces is the drift issue 20 removed
    generated = re.compile(r"<!-- ([\w:/.-]+):(begin|end) -->")  # any block tools/gen_docs.py fills
    hand_written = []
    for fname, _ in gen_docs.AREA_PAGES:
        text = (DOCS / fname).read_text(encoding="utf-8")
        lines = text.splitlines()
        inside = [False] * len(lines)
        depth = False
        for i, line in enumerate(lines):
            m = generated.search(line)
            if m:
                depth = m.group(2) == "begin"
            inside[i] = depth
        stack: list[tuple[int, str]] = []  # the headings enclosing each line
        at = {i: (level, title) for i, level, title in gen_docs.headings(text)}
        heads = []
        for i in range(len(lines)):
            if i in at:
                while stack and stack[-1][0] >= at[i][0]:
                    stack.pop()
                stack.append(at[i])
            heads.append(list(stack))
        for i, first in _table_spans(text):
            in_bench = any(gen_docs.BENCH_HEADING.search(h) for lv, h in heads[i] if lv > 1)
            if in_bench and not inside[i]:
                hand_written.append((fname, first.strip()))
    new = [f"docs/{f}: {h[:70]}" for f, h in hand_written]
    assert not new, "benchmark tables typed by hand (wrap them in a <!-- bench:... --> block):\n" + "\n".join(new)


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


def test_levers_noise_sentence_names_winners_whose_gain_is_within_the_reseed_spread():
    lev = {"chosen": {"acquisition": "k-means", "batch size": "8"},
           "rows": [{"lever": "acquisition", "option": "entropy", "gain": 0.0},
                    {"lever": "acquisition", "option": "k-means", "gain": 0.007},
                    {"lever": "batch size", "option": "64", "gain": 0.0},
                    {"lever": "batch size", "option": "8", "gain": 0.064}],
           "noise": {"scores_by_seed": {"0": 1.834, "1": 1.81, "2": 1.845}, "spread": 0.035}}
    text = gen_docs.levers_noise(lev)
    assert "1.810 (seed 1)" in text and "spread of 0.035" in text
    assert "acquisition (+0.007)" in text and "batch size" not in text  # +0.064 is above the spread
    lev["noise"]["spread"] = 0.001
    assert "Every winner's gain is above that spread" in gen_docs.levers_noise(lev)
