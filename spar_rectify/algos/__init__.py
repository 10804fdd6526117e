"""Offline algorithms, each following `algos.common.Algorithm` (flags, `data_info`, `update`,
`modules`, `optimizers`, `policy`, `export`). Defines `ALGORITHMS` (name -> class)."""

from spar_rectify.algos.bc import BC
from spar_rectify.algos.common import Batch, DataInfo
from spar_rectify.algos.iql import IQL
from spar_rectify.algos.spar import SPAR
from spar_rectify.algos.td3bc import TD3BC

ALGORITHMS = {"bc": BC, "td3bc": TD3BC, "iql": IQL, "spar": SPAR}

__all__ = ["ALGORITHMS", "BC", "TD3BC", "IQL", "SPAR", "Batch", "DataInfo"]
