"""Read a mirror as training samples: the files where they are, with their metadata.

A sample is one SectionImage at one tier: its section image and, where mirrored, its
projection and expression images (whole, or stitched from tiles), with the data set's and the
image's metadata (see ``crawler.reader.samples.sample_metadata``). Only done items whose files
are intact are read; every byte read is checked against the manifest's sha256.

    from crawler.reader import open_mirror

    with open_mirror("mirror") as mirror:
        for sample in mirror.samples(kinds=["section", "projection"], sections=(40, 60)):
            image = sample.pixels()                  # H x W x 3 uint8, checked
            mask = sample.pixels("projection")
            meta = sample.metadata()                 # data set, specimen, alignments, ...

``allen-mirror export`` is built on it (``crawler/export``).
"""

from crawler.errors import CorruptFileError
from crawler.reader.files import Member, Part
from crawler.reader.layout import sample_key
from crawler.reader.mirror import Mirror, ReaderStats, open_mirror
from crawler.reader.records import DataSetRecords
from crawler.reader.samples import KINDS, Sample, sample_metadata

__all__ = [
    "KINDS",
    "CorruptFileError",
    "DataSetRecords",
    "Member",
    "Mirror",
    "Part",
    "ReaderStats",
    "Sample",
    "open_mirror",
    "sample_key",
    "sample_metadata",
]
