"""Tora: log metrics from a training run to a self-hosted Tora server, without ever slowing it.

One experiment per process::

    import tora
    tora.setup("mnist", hyperparams={"lr": 0.1})
    for step in range(100):
        tora.tmetric("loss", loss, step)
    tora.tresult("accuracy", acc)
    tora.finish()  # or shutdown(); at exit this happens by itself

Or W&B's way (``import tora as wandb`` runs W&B's quickstart)::

    run = tora.init(project="mnist", config={"lr": 0.1})
    for step in range(100):
        tora.log({"loss": loss})
    run.summary["accuracy"] = acc
    tora.finish()
"""

from typing import TYPE_CHECKING, Any

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
    ToraUnsupportedError,
    ToraValidationError,
    ToraWorkspaceError,
)
from ._init import (
    TORA_NAMESPACE,
    Config,
    Run,
    Summary,
    UnsupportedNamespace,
    define_metric,
    init,
    login,
    save,
    unsupported_class,
    unsupported_function,
)
from ._init import _CurrentMapping as _CurrentMapping
from ._init import current as _current
from ._wrapper import (
    download_artifact,
    finish,
    flush,
    get_experiment_id,
    get_experiment_url,
    is_initialized,
    list_artifacts,
    log,
    log_artifact,
    setup,
    shutdown,
    tmetric,
    tresult,
)

__version__ = VERSION

config: Config = _CurrentMapping("config")  # type: ignore[assignment]
"""The current run's config (``tora.init()`` first)."""
summary: Summary = _CurrentMapping("summary")  # type: ignore[assignment]
"""The current run's summary (``tora.init()`` first)."""
Error = ToraError
"""W&B's ``wandb.Error``: Tora's base error."""

# W&B names Tora does not provide: using one raises ToraUnsupportedError saying what to do instead.
Image = unsupported_class("Image")
Audio = unsupported_class("Audio")
Video = unsupported_class("Video")
Html = unsupported_class("Html")
Object3D = unsupported_class("Object3D")
Molecule = unsupported_class("Molecule")
Plotly = unsupported_class("Plotly")
Table = unsupported_class("Table")
Histogram = unsupported_class("Histogram")
Artifact = unsupported_class("Artifact")
Api = unsupported_class("Api")
Settings = unsupported_class("Settings")
watch = unsupported_function("watch")
unwatch = unsupported_function("unwatch")
sweep = unsupported_function("sweep")
agent = unsupported_function("agent")
controller = unsupported_function("controller")
use_artifact = unsupported_function("use_artifact")
log_model = unsupported_function("log_model")
use_model = unsupported_function("use_model")
link_model = unsupported_function("link_model")
restore = unsupported_function("restore")
alert = unsupported_function("alert")
mark_preempting = unsupported_function("mark_preempting")
plot = UnsupportedNamespace("plot")

if TYPE_CHECKING:
    run: Run | None
    """The current run (None before tora.init()), as ``wandb.run``."""
else:

    def __getattr__(name: str) -> Any:
        if name == "run":
            return _current()
        raise AttributeError(f"module 'tora' has no attribute {name!r}")


__all__ = [
    "TORA_NAMESPACE",
    "Config",
    "Run",
    "Summary",
    "Tora",
    "ToraAPIError",
    "ToraAuthenticationError",
    "ToraConfigurationError",
    "ToraError",
    "ToraExperimentError",
    "ToraMetricError",
    "ToraNetworkError",
    "ToraTimeoutError",
    "ToraUnsupportedError",
    "ToraValidationError",
    "ToraWorkspaceError",
    "config",
    "create_workspace",
    "define_metric",
    "download_artifact",
    "finish",
    "flush",
    "get_experiment_id",
    "get_experiment_url",
    "init",
    "is_initialized",
    "list_artifacts",
    "log",
    "log_artifact",
    "login",
    "save",
    "setup",
    "shutdown",
    "summary",
    "tmetric",
    "tresult",
]
