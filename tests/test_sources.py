import re
import shutil

import numpy as np
import pytest

from curator_widgets import BlueMarbleSource, CuratorError, FolderSource, Workspace
from curator_widgets.paths import shared_data_dir
from curator_widgets.sources import bluemarble

SHARED = shared_data_dir()


def _chip_at(chips, lon, lat):
    for c in chips:
        m = c.meta
        if m["west"] <= lon < m["east"] and m["south"] <= lat < m["north"]:
            return c
    raise AssertionError(f"no chip covers {lon},{lat}")


def test_level0_pixel_size_matches_gibs_tilematrixsets():
    xml = (SHARED / "gibs" / "tilematrixsets.xml").read_text()
    block = xml[xml.index('<Projection id="EPSG:4326">'):]
    block = block[block.index("<ows:Identifier>500m</ows:Identifier>"):]
    scale = float(re.search(r"<ScaleDenominator>([\d.]+)</ScaleDenominator>", block).group(1))
    tile = int(re.search(r"<TileWidth>(\d+)</TileWidth>", block).group(1))
    deg_per_px = scale * 0.28e-3 / (2 * np.pi * 6378137 / 360)
    assert deg_per_px == pytest.approx(bluemarble.LEVEL0_PIXEL_SIZE, rel=1e-6)
    assert tile * deg_per_px == pytest.approx(288.0, rel=1e-6)


def test_known_points_ocean_and_sahara():
    src = BlueMarbleSource(level=3)
    chips = list(src.chips(region=(-10, -10, 30, 30), size=32))
    gulf = _chip_at(chips, 0.0, 0.0)  # Gulf of Guinea
    sahara = _chip_at(chips, 15.0, 23.0)
    assert gulf.meta["land_fraction"] < 0.05 and sahara.meta["land_fraction"] > 0.95
    g = gulf.image.reshape(-1, 3).mean(0)
    s = sahara.image.reshape(-1, 3).mean(0)
    assert g[2] > g[0] and s[0] > s[2]  # ocean is blue, desert is red/yellow
    assert gulf.meta["layer"] == "BlueMarble_NextGeneration" and gulf.meta["tile_matrix_set"] == "500m"
    assert gulf.meta["pixel_size"] == pytest.approx(0.0703125)
    m = sahara.meta
    assert m["east"] - m["west"] == pytest.approx(32 * 0.0703125)


def test_world_is_mostly_ocean_and_bboxes_tile_the_globe():
    chips = list(BlueMarbleSource(level=1).chips(size=64))
    assert len(chips) == (1280 // 64) * (640 // 64)
    lf = np.array([c.meta["land_fraction"] for c in chips])
    assert 0.6 < (lf < 0.5).mean() < 0.8
    assert min(c.meta["west"] for c in chips) == -180 and max(c.meta["east"] for c in chips) == 180
    assert len({c.key for c in chips}) == len(chips)


def test_antimeridian_chips_have_wrapped_bboxes():
    chips = list(BlueMarbleSource(level=3).chips(region=(175, -20, -175, -10), size=32))
    wests = sorted({c.meta["west"] for c in chips})
    assert any(w > 170 for w in wests) and any(w < -170 for w in wests)
    for c in chips:
        assert -180 <= c.meta["west"] <= 180 and -180 <= c.meta["east"] <= 180
    # Fiji (about 178E, 18S) is land in the land-sea mask; the chips around it see some land
    assert max(c.meta["land_fraction"] for c in chips) > 0.0


def test_bluemarble_errors():
    with pytest.raises(CuratorError, match="finer than its data"):
        BlueMarbleSource(level=5)
    with pytest.raises(CuratorError, match="larger than the region"):
        list(BlueMarbleSource().chips(region=(0, 0, 1, 1), size=64))
    with pytest.raises(CuratorError, match="south=5.0 is not below north=1.0"):
        list(BlueMarbleSource().chips(region=(0, 5, 1, 1), size=8))


def test_folder_source_on_ucmerced(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    res = ws.ingest(FolderSource(SHARED / "ucmerced"), size=None, progress=False)
    assert res.added == 2100 and not res.skipped
    df = ws.manifest
    assert df["label"].nunique() == 21 and (df["label"].value_counts() == 100).all()
    # images are used in place: never copied or moved
    first = df.iloc[0]
    assert first["path"] == first["origin"] and first["path"].startswith(str(SHARED / "ucmerced"))
    assert not any((ws.root / "chips").iterdir())
    again = ws.ingest(FolderSource(SHARED / "ucmerced"), size=None, progress=False)
    assert again.added == 0 and again.existing == 2100


def test_folder_source_corrupt_files_are_reported_and_skipped(tmp_path):
    src_dir = tmp_path / "imgs"
    (src_dir / "forest").mkdir(parents=True)
    (src_dir / "river").mkdir()
    good = SHARED / "ucmerced" / "forest" / "forest00.jpg"
    shutil.copy(good, src_dir / "forest" / "a.jpg")
    shutil.copy(good, src_dir / "river" / "b.jpg")
    (src_dir / "river" / "truncated.jpg").write_bytes(good.read_bytes()[:2000])
    (src_dir / "river" / "fake.png").write_text("not an image")
    ws = Workspace.create(tmp_path / "ws")
    with pytest.warns(UserWarning, match="skipped"):
        res = ws.ingest(FolderSource(src_dir), size=128, overlap=0.5, progress=False)
    assert res.added == 2 * 9
    bad = {s.where.split("/")[-1] for s in res.skipped}
    assert bad == {"truncated.jpg", "fake.png"}
    assert all("cannot decode" in s.reason for s in res.skipped)
    with pytest.warns(UserWarning, match="skipped") as caught:  # named at the caller's line, not in tqdm or here
        ws.ingest(FolderSource(src_dir), size=128, overlap=0.5, progress=True)
    assert {w.filename for w in caught if "skipped" in str(w.message)} == {__file__}
    assert set(ws.manifest["label"]) == {"forest", "river"}
    assert ws.load_chip(0).shape == (128, 128, 3)


def test_folder_source_labels_are_the_top_level_class_folders_at_any_depth(tmp_path):
    """root/<class>/<sub>/x.png is <class>: a subfolder named alike under two classes must not become a class of
    its own that mixes them; images directly in the root have no label."""
    root = tmp_path / "imgs"
    good = SHARED / "ucmerced" / "forest" / "forest00.jpg"
    for rel in ("forest/a.jpg", "forest/2020/b.jpg", "river/2020/c.jpg", "river/x/y/d.jpg", "loose.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(good, root / rel)
    ws = Workspace.create(tmp_path / "ws")
    ws.ingest(FolderSource(root), size=None, progress=False)
    got = {p.split("/imgs/")[1]: (lab if isinstance(lab, str) else None)  # pandas reads a missing label as NaN
           for p, lab in zip(ws.manifest["origin"], ws.manifest["label"])}
    assert got == {"forest/a.jpg": "forest", "forest/2020/b.jpg": "forest", "river/2020/c.jpg": "river",
                   "river/x/y/d.jpg": "river", "loose.jpg": None}
    assert FolderSource(root, labels=False).label_of(root / "river" / "2020" / "c.jpg") is None


def test_folder_source_errors(tmp_path):
    with pytest.raises(CuratorError, match="image folder not found"):
        FolderSource(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CuratorError, match="no images"):
        FolderSource(tmp_path / "empty").files()
