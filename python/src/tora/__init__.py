"""Tora: log metrics from a training run to a self-hosted Tora server, without ever slowing it.

One experiment per process::

    import tora
    tora.setup("mnist", hyperparams={"lr": 0.1})
    for step in range(100):
        tora.tmetric("loss", loss, step)
    tora.tresult("accuracy", acc)
    tora.finish()  # or shutdown(); at exit this happens by itself
"""

from ._client import Tora, create_workspace
from ._config import VERSION
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
    download_artifact,
    finish,
    flush,
    get_experiment_id,
    get_experiment_url,
    is_initialized,
    list_artifacts,
    log_artifact,
    setup,
    shutdown,
    tmetric,
    tresult,
)

__version__ = VERSION

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
    "download_artifact",
    "finish",
    "flush",
    "get_experiment_id",
    "get_experiment_url",
    "is_initialized",
    "list_artifacts",
    "log_artifact",
    "setup",
    "shutdown",
    "tmetric",
    "tresult",
]
