"""curator_widgets: from one reference satellite image to a curated, balanced, labelled dataset.

The kernel API (workspace, sources, training, search, sampling, labels) is importable without
any widget; widgets live in `curator_widgets.widgets` and build on it.
"""

from __future__ import annotations

import os as _os

# PyTorch's OpenMP threads spin while waiting by default; on a shared or busy CPU (CI, Binder, a
# laptop running JupyterLab) that burns the cores the other thread needs: measured on 2 shared
# cores, SSL training ran 3x faster with passive waiting. Only applies if torch is not yet loaded.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .bbox import BBox
from .errors import CuratorError
from .sources import BlueMarbleSource, Chip, FolderSource, Source, grid_windows
from .sources import GIBSSource, WMTSServer, load_catalog
from .workspace import Workspace
from .labels import LabelStore
from .active import ActiveLoop, Oracle, SeedSet, seed_set
from .heads import ClassifierHead, Head, register_head
from . import propagation as _propagation  # noqa: F401  (registers the "propagation" head kind)

__all__ = ["BBox", "CuratorError", "BlueMarbleSource", "Chip", "FolderSource", "Source", "grid_windows",
           "Workspace"]
__all__ += ["GIBSSource", "WMTSServer", "load_catalog"]
__all__ += ["LabelStore"]
from .exports import export_labels, import_labels
__all__ += ["export_labels", "import_labels"]
__all__ += ["ActiveLoop", "Oracle", "SeedSet", "seed_set", "Head", "ClassifierHead", "register_head"]
from .notebooks import oracle_from_rule, run_notebook
from .plots import chip_grid, learning_curve
__all__ += ["run_notebook", "oracle_from_rule", "chip_grid", "learning_curve"]
from .sampling import (cluster_balanced_sample, covering_radius, farthest_point_sample, load_sample,
                       nearest_pick_distances, random_sample, save_sample, stratified_farthest_point_sample)
from .balance import (augmented_oversample, class_size_std, iterative_balance, low_frequency_classes, oversample,
                      reweight, undersample)
__all__ += ["farthest_point_sample", "stratified_farthest_point_sample", "cluster_balanced_sample", "random_sample",
            "covering_radius", "nearest_pick_distances", "save_sample", "load_sample", "iterative_balance", "undersample",
            "oversample", "reweight", "augmented_oversample", "low_frequency_classes", "class_size_std"]

from .preprocess import (cloud_masks, composite_chips, composite_region, fill_swaths, load_cloud_mask, load_mosaic,
                         load_provenance)
__all__ += ["composite_chips", "composite_region", "cloud_masks", "fill_swaths", "load_cloud_mask", "load_mosaic",
            "load_provenance"]

# Names imported on first use (name -> module), so `import curator_widgets` stays light.
_LAZY = {name: ".widgets" for name in ("RegionPicker", "EmbeddingView", "SampleGallery", "SwipeLabeler", "CuratorApp")}
# SSL training and embeddings (torch, lightly); `embed` itself stays curator_widgets.embed.embed,
# since a package attribute named like its submodule would be replaced by the module on import.
_LAZY.update({"train_ssl": ".train", "load_model": ".train", "load_embeddings": ".embed", "embed_images": ".embed"})
# Similarity index and 2-D projection (faiss/umap are imported inside the functions).
_LAZY.update({name: ".index" for name in ("build_index", "load_index", "add_to_index", "search", "knn_graph",
                                          "filter_mask", "SearchResult", "SimilarityIndex")})
_LAZY.update({name: ".multires" for name in ("tile_vote_search", "register_resolution", "pick_run",
                                             "resolution_search", "resolutions")})
_LAZY.update({name: ".projection" for name in ("project", "plot_projection", "save_projection_plot")})
# The Curator protocol and the graph head (issue 14).
_LAZY.update({"save_embeddings": ".embed", "LabelPropagation": ".propagation", "run_protocol": ".protocol",
              "SSLRecipe": ".protocol", "LoopRecipe": ".protocol", "Whitening": ".whitening", "whiten_run": ".whitening"})
# The Dask cluster engine (issue 17): dask/distributed/zarr are imported only when a cluster is used.
_LAZY.update({"get_client": ".cluster", "LoopbackCluster": ".cluster", "ShardedEmbeddings": ".shards",
              "cluster_farthest_point_sample": ".cluster_sampling",
              "cluster_stratified_farthest_point_sample": ".cluster_sampling", "cluster_score_and_pick": ".cluster_active",
              "cluster_predict_proba": ".cluster_active", "cluster_embed": ".cluster_embed",
              "parts_dataset": ".cluster_ingest"})
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
