"""Preprocessing of dated imagery: cloud-free composites, cloud masks and swath-gap fills."""

from .clouds import MASK_METHODS, CloudyImage, detect_clouds, fractal_noise, mask_iou, synthetic_clouds
from .composite import COMPOSITE_METHODS, Composite, composite, mae, psnr
from .steps import (Provenance, StepResult, cloud_masks, composite_chips, fill_swaths, load_cloud_mask,
                    load_provenance)
from .swaths import SWATH_METHODS, fill_gaps
from .mosaic import RegionMosaic, composite_region, load_mosaic

__all__ = ["MASK_METHODS", "CloudyImage", "detect_clouds", "fractal_noise", "mask_iou", "synthetic_clouds",
           "COMPOSITE_METHODS", "Composite", "composite", "mae", "psnr", "Provenance", "StepResult", "cloud_masks",
           "composite_chips", "fill_swaths", "load_cloud_mask", "load_provenance", "SWATH_METHODS", "fill_gaps",
           "RegionMosaic", "composite_region", "load_mosaic"]
