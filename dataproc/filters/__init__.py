"""Batch filters (keep/drop per document over whole Arrow batches); see ``base.BatchFilter``."""

from dataproc.filters.c4 import C4Quality as C4Quality
from dataproc.filters.fineweb import FineWebQuality as FineWebQuality
from dataproc.filters.gopher import GopherQuality as GopherQuality
from dataproc.filters.gopher import GopherRepetition as GopherRepetition
from dataproc.filters.harmful import HarmfulContentFilter as HarmfulContentFilter
from dataproc.filters.langid import LanguageID as LanguageID
