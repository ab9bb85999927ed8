"""The catalog search puts a product without swath gaps (VIIRS) first and says which layers have gaps."""

from __future__ import annotations

import numpy as np

from curator_widgets.sources.catalog import parse_capabilities
from curator_widgets.sources.wmts_server import capabilities_document, global_image_layer

LAYERS = ["MODIS_Terra_CorrectedReflectance_TrueColor", "MODIS_Aqua_CorrectedReflectance_TrueColor",
          "VIIRS_SNPP_CorrectedReflectance_TrueColor", "VIIRS_SNPP_DayNightBand_ENCC"]


def _catalog():
    img = np.zeros((4, 8, 3), np.uint8)
    served = [global_image_layer(name, img, "2020-09-27", title=name.replace("_", " ")) for name in LAYERS]
    return parse_capabilities(capabilities_document(served, "http://127.0.0.1:1/wmts/epsg4326/best"))


def test_gap_free_product_ranks_first_unless_modis_is_asked_for():
    cat = _catalog()
    found = [layer.identifier for layer in cat.search("corrected reflectance true color")]
    assert found[0] == "VIIRS_SNPP_CorrectedReflectance_TrueColor" and len(found) == 3
    assert cat.search("modis true color")[0].identifier.startswith("MODIS_")
    assert cat.search("terra corrected")[0].identifier == "MODIS_Terra_CorrectedReflectance_TrueColor"


def test_summary_says_which_layers_have_swath_gaps():
    cat = _catalog()
    assert cat.get("MODIS_Aqua_CorrectedReflectance_TrueColor").swath_gaps is True
    assert "swath gaps near the equator: a VIIRS layer has none" in cat.get(LAYERS[0]).summary()
    assert cat.get(LAYERS[2]).summary().endswith("(no swath gaps)")
    assert cat.get("VIIRS_SNPP_DayNightBand_ENCC").swath_gaps is None  # not a reflectance product
