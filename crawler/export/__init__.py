"""Training datasets from a mirror: WebDataset and Parquet shards, OME-Zarr images.

Built on ``crawler.reader``: ``plan`` decides (splits, shard names, option checks) in plain
functions; ``shards`` writes tars and Parquet files; ``omezarr`` one multiscale image per
sample; ``labels`` the structure ids per pixel; ``run`` wires them into one streaming pass.
"""

from crawler.export.plan import ExportOptions, split_of
from crawler.export.run import ExportReport, run_export

__all__ = ["ExportOptions", "ExportReport", "run_export", "split_of"]
