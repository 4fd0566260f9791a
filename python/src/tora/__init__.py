"""Tora: log metrics from a training run to a self-hosted Tora server, without ever slowing it.

One experiment per process::

    import tora
    tora.setup("mnist", hyperparams={"lr": 0.1})
    for step in range(100):
        tora.tmetric("loss", loss, step)
    tora.tresult("accuracy", acc)
    tora.shutdown()
"""

from ._client import Tora, create_workspace
from ._exceptions import (
    ToraAPIError,
    ToraAuthenticationError,
    ToraConfigurationError,
    ToraError,
    ToraExperimentError,
    ToraMetricError,
    ToraNetworkError,
    ToraTimeoutError,
    ToraValidationError,
    ToraWorkspaceError,
)
from ._wrapper import (
    flush,
    get_experiment_id,
    get_experiment_url,
    is_initialized,
    setup,
    shutdown,
    tmetric,
    tresult,
)

__version__ = "0.1.0"

__all__ = [
    "Tora",
    "ToraAPIError",
    "ToraAuthenticationError",
    "ToraConfigurationError",
    "ToraError",
    "ToraExperimentError",
    "ToraMetricError",
    "ToraNetworkError",
    "ToraTimeoutError",
    "ToraValidationError",
    "ToraWorkspaceError",
    "create_workspace",
    "flush",
    "get_experiment_id",
    "get_experiment_url",
    "is_initialized",
    "setup",
    "shutdown",
    "tmetric",
    "tresult",
]
