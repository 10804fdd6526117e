"""Offline algorithms, each following `algos.common.Algorithm` (flags, `data_info`, `update`,
`modules`, `optimizers`, `policy`, `export`). Defines `ALGORITHMS` (name -> class) and
`training_fields`."""

from spar_rectify.algos.bc import BC
from spar_rectify.algos.common import Batch, DataInfo
from spar_rectify.algos.iql import IQL
from spar_rectify.algos.spar import SPAR
from spar_rectify.algos.td3bc import TD3BC
from spar_rectify.config import CommonSettings, TrainConfig, section_fields

ALGORITHMS = {"bc": BC, "td3bc": TD3BC, "iql": IQL, "spar": SPAR}


def training_fields(config: TrainConfig) -> tuple[str, ...]:
    """Names of the `TrainConfig` fields that change what `config.algo` trains: the common settings
    and the sections its algorithm reads (`settings`), never bookkeeping or other methods' sections.
    Two runs of one method with equal values here train the same networks; resume and the benchmark
    records compare these."""
    return section_fields(CommonSettings, *ALGORITHMS[config.algo].settings)


__all__ = ["ALGORITHMS", "training_fields", "BC", "TD3BC", "IQL", "SPAR", "Batch", "DataInfo"]
