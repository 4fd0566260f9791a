"""Tora for the training frameworks, each used the framework's own way.

Each module imports its framework when it is imported itself, never before: ``import tora``
imports none of them, and a module whose framework is missing raises ImportError naming the pip
package.

* ``tora.integrations.lightning.ToraLogger``: a Lightning ``Logger`` for ``Trainer(logger=...)``
* ``tora.integrations.transformers.ToraCallback``: a ``TrainerCallback`` for ``Trainer(callbacks=[...])``
* ``tora.integrations.keras.ToraCallback``: a Keras 3 ``Callback`` for ``model.fit(callbacks=[...])``
* ``tora.integrations.xgboost.ToraCallback``: a ``TrainingCallback`` for ``xgb.train(callbacks=[...])``
* ``tora.integrations.lightgbm.ToraCallback``: a callback for ``lgb.train(callbacks=[...])``
* ``tora.integrations.optuna.ToraCallback``: ``study.optimize(..., callbacks=[...])``, a run per trial
* ``tora.integrations.sklearn.log_search``: a fitted search's ``cv_results_``, a run per candidate

The single-run integrations log to the current run (``tora.run``) when there is one, and
otherwise start one with ``tora.init`` (given the keyword arguments the integration was made
with) and finish it when training ends.
"""
