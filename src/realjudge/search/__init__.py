"""Topology search for the CIFAKE CNN family: the paper's 36-network grid, custom grids, or TPE."""

from .grid import Topology, conv_stage, count_macs, count_params, dense_stage
from .runner import Search, SearchSettings, best_row, run_search

__all__ = ["Topology", "Search", "SearchSettings", "run_search", "best_row", "conv_stage", "dense_stage",
           "count_macs", "count_params"]
