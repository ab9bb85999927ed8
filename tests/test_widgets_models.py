"""The front end's typed models (js/src/models.ts) against the Python widgets' synced traits.

TypeScript checks every `model.get` against those interfaces, so an interface that drifts from
Python would let the front end read a trait that is never sent; this test keeps them one list.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import traitlets

from curator_widgets.widgets._base import Choice, TraitValueError
from curator_widgets.widgets.embedding_view import EmbeddingView
from curator_widgets.widgets.gallery import SampleGallery
from curator_widgets.widgets.region_picker import RegionPicker
from curator_widgets.widgets.swipe_labeler import SwipeLabeler

MODELS = Path(__file__).resolve().parents[1] / "js" / "src" / "models.ts"
WIDGETS = {"EmbeddingViewModel": EmbeddingView, "GalleryModel": SampleGallery,
           "RegionPickerModel": RegionPicker, "SwipeLabelerModel": SwipeLabeler}


def ts_interfaces(text: str) -> dict[str, dict[str, str]]:
    """Each interface's fields (name -> TS type), with the fields of the interfaces it extends."""
    raw: dict[str, tuple[list[str], dict[str, str]]] = {}
    for m in re.finditer(r"interface (\w+)(?: extends ([\w, ]+))? \{(.*?)\n\}", text, re.S):
        body = re.sub(r"/\*\*.*?\*/", "", m.group(3), flags=re.S)
        fields = dict(re.findall(r"^\s+(\w+)\??: (.+);$", body, re.M))
        raw[m.group(1)] = ([p.strip() for p in (m.group(2) or "").split(",") if p.strip()], fields)

    def resolve(name: str) -> dict[str, str]:
        parents, fields = raw[name]
        out: dict[str, str] = {}
        for p in parents:
            out.update(resolve(p))
        return {**out, **fields}

    return {name: resolve(name) for name in raw}


def synced_traits(cls: type) -> dict[str, traitlets.TraitType]:
    """Traits the curator classes (widgets and their mixins) declare with sync=True, not anywidget's or
    ipywidgets' own."""
    out: dict[str, traitlets.TraitType] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("curator_widgets."):
            for name, t in vars(klass).items():
                if isinstance(t, traitlets.TraitType) and t.metadata.get("sync") and not name.startswith("_"):
                    out[name] = t
    return out


@pytest.mark.parametrize("interface", sorted(WIDGETS))
def test_js_model_lists_every_synced_trait(interface: str) -> None:
    fields = ts_interfaces(MODELS.read_text())[interface]
    traits = synced_traits(WIDGETS[interface])
    assert sorted(fields) == sorted(traits)
    for name, trait in traits.items():  # one-of-a-set traits: the same choices on both sides
        if isinstance(trait, traitlets.Enum):
            assert isinstance(trait, Choice), f"{name}: use Choice so bad values raise TraitValueError"
            assert sorted(re.findall(r'"(\w+)"', fields[name])) == sorted(trait.values), name


def test_region_picker_source_is_a_choice() -> None:
    picker = RegionPicker()
    with pytest.raises(TraitValueError, match="source must be one of bluemarble, gibs"):
        picker.source = "wms"
    assert picker.source == "bluemarble"  # the failed assignment kept the old value
