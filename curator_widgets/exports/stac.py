"""A curated set as a self-contained STAC catalog (pystac): one item per chip, labels via the
label extension, so GIS users open it in QGIS / stac-browser and ML users in their STAC tools."""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from ..errors import CuratorError
from .common import add_imported, curated, file_name, read_json
from .dest import Payload, write_files

if TYPE_CHECKING:
    from ..labels import LabelStore

MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff",
         ".tiff": "image/tiff", ".webp": "image/webp"}


def export_stac(store: "LabelStore", dest: str | os.PathLike, sources: Sequence[str] | None = None,
                include_unsure: bool = False) -> Path:
    """Write dest/catalog.json and dest/chip-<id>/ (item JSON, chip image, labels.geojson)."""
    import pystac

    with warnings.catch_warnings():  # pystac flags the extension "pilot"; it is still STAC's way to carry labels
        warnings.simplefilter("ignore", DeprecationWarning)
        from pystac.extensions.label import LabelClasses, LabelExtension, LabelType

    df = curated(store, sources, include_unsure)
    root = Path(dest).expanduser().absolute()
    catalog = pystac.Catalog(id=f"curator-{store.task}", description=f"Curated chips of task {store.task!r} "
                             f"with their labels ({', '.join(store.choices)})")
    files: list[tuple[str, Payload]] = []
    for row in df.itertuples(index=False):
        if pd.isna(row.west):
            raise CuratorError(f"chip {row.id} has no bounds, and a STAC item needs a footprint",
                               "export chips with bounds (GIBS / georeferenced sources), or use the hf, "
                               "fiftyone or labelstudio format")
        item_id = f"chip-{row.id:08d}"
        bbox = [float(row.west), float(row.south), float(row.east), float(row.north)]
        when = datetime.fromisoformat(row.date).replace(tzinfo=timezone.utc) if isinstance(row.date, str) \
            else row.time.to_pydatetime()  # static layers have no date: the time it was labelled
        item = pystac.Item(item_id, geometry=_polygon(bbox), bbox=bbox, datetime=when, properties={
            "curator:chip_id": int(row.id), "curator:key": row.key, "curator:task": store.task,
            "curator:annotator": row.annotator, "curator:source": row.source,
            "gibs:layer": _plain(row.layer), "gibs:tile_matrix_set": _plain(row.tile_matrix_set),
            "gibs:tile_matrix": _plain(row.tile_matrix)})
        image = file_name(row.id, row.path)
        item.add_asset("image", pystac.Asset(f"./{image}", media_type=MEDIA.get(Path(image).suffix.lower()),
                                             roles=["data"], title="chip image"))
        label = LabelExtension.ext(item, add_if_missing=True)
        label.apply(label_description=f"{store.task}: one class per chip", label_type=LabelType.VECTOR,
                    label_properties=["label"], label_classes=[LabelClasses.create(list(store.choices), "label")],
                    label_tasks=["classification"],
                    label_methods=["automated" if row.source == "model" else "manual"])
        label.add_geojson_labels("./labels.geojson", title="chip label")
        catalog.add_item(item)
        feature = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": _polygon(bbox),
                   "properties": {"label": row.label, "annotator": row.annotator, "source": row.source}}]}
        files.append((f"{item_id}/{image}", Path(row.path)))
        files.append((f"{item_id}/labels.geojson", _json(feature)))
    catalog.normalize_hrefs(str(root))
    catalog.catalog_type = pystac.CatalogType.SELF_CONTAINED
    for obj in [catalog, *catalog.get_items()]:
        rel = Path(obj.get_self_href()).relative_to(root).as_posix()
        files.append((rel, _json(obj.to_dict(include_self_link=False, transform_hrefs=True))))
    return write_files(root, "stac", files)


def import_stac(store: "LabelStore", path: str | os.PathLike) -> int:
    """Labels of a STAC export (its catalog.json or folder) as `import` events; reads only inside it."""
    import pystac

    path = Path(path).expanduser()
    catalog_file = path / "catalog.json" if path.is_dir() else path
    root = Path(os.path.realpath(catalog_file.parent))
    read_json(catalog_file)  # a clear error for a missing or malformed catalog
    try:
        catalog = pystac.Catalog.from_file(str(catalog_file), stac_io=_inside_io(root))
        items = list(catalog.get_items(recursive=True))
    except CuratorError:
        raise
    except Exception as e:  # pystac raises many types for bad STAC
        raise CuratorError(f"{catalog_file} is not a readable STAC catalog ({type(e).__name__}: {e})",
                           "import the catalog a curator export wrote; nothing was written") from None
    ids, labels, annotators, keys = [], [], [], []
    for item in items:
        asset = item.assets.get("labels")
        if "curator:chip_id" not in item.properties or asset is None:
            raise CuratorError(f"STAC item {item.id!r} lacks curator:chip_id or a labels asset",
                               "import a catalog a curator export wrote; nothing was written")
        feats = read_json(_inside(root, Path(asset.get_absolute_href() or ""))).get("features") or [{}]
        props = feats[0].get("properties") or {}
        ids.append(item.properties["curator:chip_id"])
        labels.append(props.get("label"))
        annotators.append(props.get("annotator"))
        keys.append(item.properties.get("curator:key"))
    return add_imported(store, ids, labels, annotators, keys=keys, origin=str(catalog_file))


def _inside_io(root: Path) -> Any:
    """A pystac StacIO that reads only files inside the catalog folder (no URLs, no ../ escapes)."""
    import pystac

    class InsideIO(pystac.stac_io.DefaultStacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            return _inside(root, Path(str(source))).read_text()

    return InsideIO()


def _inside(root: Path, path: Path) -> Path:
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise CuratorError(f"the STAC catalog links to {path}, outside its folder {root}",
                           "import only self-contained catalogs; nothing was written")
    return real


def _polygon(b: list[float]) -> dict[str, Any]:
    w, s, e, n = b
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _plain(v: Any) -> Any:
    """numpy / pandas scalars as JSON values; missing as null."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()
