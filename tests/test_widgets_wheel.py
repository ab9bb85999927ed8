"""The wheel carries the built JS bundles and the server-extension config, and the widgets import
from the installed wheel (not from this checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ["region_picker", "embedding_view", "gallery", "swipe_labeler"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    missing = [b for b in BUNDLES if not (REPO / "curator_widgets" / "static" / f"{b}.js").exists()]
    if missing:
        pytest.fail(f"bundles {missing} not built: run `npm --prefix js ci && npm --prefix js run build` first")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, timeout=300)
    (whl,) = out.glob("curator_widgets-*.whl")
    return whl


def test_wheel_contains_bundles_and_server_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for b in BUNDLES:
        assert f"curator_widgets/static/{b}.js" in names
        assert f"curator_widgets/static/{b}.css" in names
    cfg = [n for n in names if n.endswith("etc/jupyter/jupyter_server_config.d/curator_widgets.json")]
    assert cfg and cfg[0].startswith("curator_widgets-0.") and ".data/data/" in cfg[0]
    assert "curator_widgets/server/handlers.py" in names
    assert not any("node_modules" in n or n.startswith("js/") for n in names)


def test_widgets_import_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    code = (
        "import curator_widgets, numpy as np\n"
        "from curator_widgets.widgets import EmbeddingView, SwipeLabeler, RegionPicker, SampleGallery\n"
        f"assert curator_widgets.__file__.startswith({str(target)!r}), curator_widgets.__file__\n"
        "v = EmbeddingView(np.random.rand(10, 2))\n"
        "esm = str(v._esm)\n"
        "assert len(esm) > 50000 and 'is missing' not in esm\n"
        "print('ok', curator_widgets.__file__)\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
