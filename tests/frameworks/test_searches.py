"""optuna.ToraCallback and sklearn.log_search: a run per trial or candidate, in one group."""

from __future__ import annotations

from urllib.parse import quote

from conftest import ToraServer, experiment, hyperparams, results, run_example, series


def test_optuna_makes_each_trial_a_run_in_the_study_group(server: ToraServer) -> None:
    done, ids = run_example("optuna_example.py")
    study = done.stdout.split("study:")[1].split()[0]
    best_number, best_value = done.stdout.split("best:")[1].split()
    assert len(ids) == 6
    pruned = 0
    for number, run_id in enumerate(ids):
        stored = experiment(server, run_id)
        assert stored["name"] == f"trial-{number}"
        assert stored["group"] == study
        assert stored["state"] == "finished"
        config = hyperparams(server, run_id)
        assert set(config) == {"alpha", "eta0", "penalty", "trial_number"}
        assert config["trial_number"] == number
        assert config["penalty"] in ("l1", "l2")
        reports = series(server, run_id)["intermediate/val_mse"]
        steps = [s for s, _ in reports]
        scores = results(server, run_id)
        assert scores["duration_s"] >= 0
        # a pruned trial's value is its last report, as Optuna records it
        assert scores["val_mse"] == reports[-1][1]
        if "pruned" in stored["tags"]:
            pruned += 1
            assert steps == list(range(len(steps))) and len(steps) < 5
        else:
            assert steps == [0, 1, 2, 3, 4]
    assert results(server, ids[int(best_number)])["val_mse"] == float(best_value)
    # the whole study is one filter away
    workspace = experiment(server, ids[0])["workspace_id"]
    listed = server.get(
        f"/experiments?workspace={workspace}&q=" + quote(f"group:{study.upper()}")
    )
    assert sorted(e["id"] for e in listed) == sorted(ids)
    assert pruned > 0, "the example's pruner should have stopped a trial"


def test_sklearn_search_logs_one_run_per_candidate(server: ToraServer) -> None:
    done, _ = run_example("sklearn_example.py")
    ids = done.stdout.split("runs:")[1].split("\n")[0].split()
    best_index = int(done.stdout.split("best:")[1].split()[0])
    assert len(ids) == 6
    seen = set()
    for i, run_id in enumerate(ids):
        stored = experiment(server, run_id)
        assert stored["name"] == f"LogisticRegression-{i}"
        assert stored["group"] == "breast-cancer-logreg"
        assert stored["state"] == "finished"
        assert ("best" in stored["tags"]) == (i == best_index)
        config = hyperparams(server, run_id)
        assert set(config) == {
            "logisticregression__C",
            "logisticregression__fit_intercept",
        }
        seen.add(
            (
                config["logisticregression__C"],
                config["logisticregression__fit_intercept"],
            )
        )
        scores = results(server, run_id)
        assert {
            "mean_test_score",
            "std_test_score",
            "rank_test_score",
            "mean_fit_time",
        } <= set(scores)
        assert 0.5 < scores["mean_test_score"] <= 1.0
        folds = series(server, run_id)["split/test_score"]
        assert [s for s, _ in folds] == [0, 1, 2]
        assert abs(sum(v for _, v in folds) / 3 - scores["mean_test_score"]) < 1e-9
    assert len(seen) == 6
