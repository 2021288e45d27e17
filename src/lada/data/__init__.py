"""Reasoning data: the sample type, loaders, the synthetic benchmark and federated splits."""

from lada.data.errors import DataError
from lada.data.jsonl import read_jsonl_dicts, write_jsonl
from lada.data.loaders import (
    LoadReport,
    LoadResult,
    canonical_number,
    load_dataset,
    load_gsm8k,
    load_lada_jsonl,
    load_mc_jsonl,
)
from lada.data.sample import Sample, format_path, format_prompt
from lada.data.split import ClientData, FederatedSplit, SplitConfig, load_split, make_split
from lada.data.stats import dataset_stats
from lada.data.synthetic import SyntheticConfig, World, general_corpus, generate, make_world

__all__ = [
    "ClientData",
    "DataError",
    "FederatedSplit",
    "LoadReport",
    "LoadResult",
    "Sample",
    "SplitConfig",
    "SyntheticConfig",
    "World",
    "canonical_number",
    "dataset_stats",
    "format_path",
    "format_prompt",
    "general_corpus",
    "generate",
    "load_dataset",
    "load_gsm8k",
    "load_lada_jsonl",
    "load_mc_jsonl",
    "load_split",
    "make_split",
    "make_world",
    "read_jsonl_dicts",
    "write_jsonl",
]
