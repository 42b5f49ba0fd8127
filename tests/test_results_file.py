"""The results file's one schema: built from rows, validated, written (results.nc and its CSV twin)."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ilscaling.results_file import DIMS, build_results, validate_results, write_results


def rows(game="Pong", budgets=(1e13, 1e14), sizes=(1000, 4000), seed=0):
    return [{"game": game, "flops": c, "params": n, "seed": seed, "loss": 1.0 + n / c, "return": 5.0, "samples": c / n}
            for c in budgets for n in sizes]


def test_rows_become_the_dataset_with_every_value_column_and_the_expert_values():
    dataset = build_results(rows() + rows("Qbert", sizes=(2000,)), {"expert_return": {"Pong": 21.0}})
    assert tuple(dataset["loss"].dims) == DIMS
    assert dataset["params"].dtype == np.int64
    assert np.isnan(dataset["kl"]).all() and np.isnan(dataset["epochs"]).all()  # columns the rows lack: NaN
    assert float(dataset["expert_return"].sel(game="Pong")) == 21.0
    assert np.isnan(float(dataset["expert_return"].sel(game="Qbert")))
    assert np.isnan(float(dataset["loss"].sel(game="Qbert", flops=1e13, params=1000, seed=0)))  # never run
    validate_results(dataset)


def test_duplicate_and_missing_rows_are_rejected():
    with pytest.raises(ValueError, match=r"game 'Pong': duplicate result for flops=1e\+13, params=1000, seed=0"):
        build_results(rows() + rows(budgets=(1e13,), sizes=(1000,)))
    with pytest.raises(ValueError, match="no rows"):
        build_results([])


def test_validation_names_the_source_and_the_game():
    dataset = build_results(rows(budgets=(1e13,)))
    with pytest.raises(ValueError, match=r"^table.csv: game 'Pong': results of a single compute budget"):
        validate_results(dataset, source="table.csv")


def test_written_file_reads_back_and_its_csv_has_one_row_per_run(tmp_path):
    dataset = build_results(rows() + rows("Qbert", sizes=(2000,)), {"expert_return": {}})
    write_results(dataset, tmp_path / "results.nc", tmp_path / "results.csv")
    with xr.open_dataset(tmp_path / "results.nc") as back:
        xr.testing.assert_identical(back.load(), dataset)
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 6 and "expert_return" not in table
    assert list(table.columns[:4]) == list(DIMS)


def _evaluation(game, params, **extra):
    return {"game": game, "budget": 1e12, "params": params, "seed": 0, "flops": 1.01e12, "loss": 1.7,
            "return": 10.0, "return_sem": 1.0, "samples": 100, "epochs": 1.0, "train_loss": 1.6, "width": 2, **extra}


def test_gather_puts_kl_beside_the_loss(tmp_path):
    from ilscaling.evaluate import gather_results
    from ilscaling.io import DataFileError, write_json

    write_json(_evaluation("Qbert", 10, kl=0.02), tmp_path / "a.json")
    write_json(_evaluation("NetHack", 20), tmp_path / "n.json")  # NetHack: no expert distribution, no kl
    write_json({"game": "Qbert", "expert_mean_return": 5.0, "expert_cross_entropy": 1.6, "expert_kl": 1e-8},
               tmp_path / "card.json")
    dataset = gather_results([tmp_path / "a.json", tmp_path / "n.json"], [tmp_path / "card.json"],
                             tmp_path / "r.nc", tmp_path / "r.csv", log=lambda *_: None)
    assert float(dataset["kl"].sel(game="Qbert").max()) == 0.02
    assert np.isnan(dataset["kl"].sel(game="NetHack").values).all()
    assert float(dataset["expert_kl"].sel(game="Qbert")) == 1e-8
    table = pd.read_csv(tmp_path / "r.csv")
    assert list(table.columns[:7]) == ["game", "flops", "params", "seed", "flops_actual", "kl", "loss"]
    assert "kl" in xr.load_dataset(tmp_path / "r.nc")
    write_json(_evaluation("Qbert", 30), tmp_path / "old.json")  # an Atari evaluation from before the KL
    with pytest.raises(DataFileError, match=r"old.json lacks kl"):
        gather_results([tmp_path / "old.json"], [], tmp_path / "s.nc", tmp_path / "s.csv", log=lambda *_: None)
