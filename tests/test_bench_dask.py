"""``python -m fastem bench --dask``: the Dask-vs-in-process benchmark runs
end to end on a small LocalCluster and reports agreeing models."""

from __future__ import annotations

import json
import sys

import pytest

from fastem import bench


def test_bench_dask_without_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(SystemExit, match="dask and distributed"):
        bench.main(["--dask", "-n", "10000"])


@pytest.mark.slow
def test_bench_dask_runs_and_models_agree(tmp_path, capsys):
    pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    out = tmp_path / "dask.json"
    status = bench.main(
        [
            "--dask",
            "-n", "20000",
            "--shapes", "3x2",
            "--cov", "diag,full",
            "--iterations", "3",
            "--repeat", "1",
            "--threads", "1",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    text = capsys.readouterr().out
    assert "cluster start-up" in text
    result = json.loads(out.read_text())
    assert result["settings"]["workers"] == 2
    assert result["settings"]["chunk_rows"] == 2500  # 4 blocks per worker
    assert result["cluster_startup_s"] > 0
    assert [c["covariance_type"] for c in result["cases"]] == ["diag", "full"]
    for case in result["cases"]:
        assert case["n_iter"] == [3, 3]
        assert case["blocks"] == 8
        assert case["dask_ms_per_iter"]["best"] > 0
        assert case["in_process_ms_per_iter"]["best"] > 0
        assert case["relative_difference"]["means"] < 1e-10
