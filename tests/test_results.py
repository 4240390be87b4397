import json

import pytest

from probe import results


def test_wilson_interval_known_values():
    lo, hi = results.binomial_ci(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-3) and hi == pytest.approx(0.8666, abs=1e-3)
    assert results.binomial_ci(0, 10)[0] == 0.0 and results.binomial_ci(10, 10)[1] == 1.0
    assert results.binomial_ci(0, 0) == (0.0, 1.0)


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    results.atomic_write_json(path, {"a": 1})

    class Boom(RuntimeError):
        pass

    def exploding_dumps(*a, **k):
        raise Boom()

    monkeypatch.setattr(results.json, "dumps", exploding_dumps)
    with pytest.raises(Boom):
        results.atomic_write_json(path, {"a": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_cleans_temp_on_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    results.atomic_write_text(path, "old")

    def bad_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", bad_replace)
    with pytest.raises(OSError):
        results.atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_read_json_and_csv(tmp_path):
    assert results.read_json(tmp_path / "missing.json") is None
    (tmp_path / "half.json").write_text('{"a": ')
    assert results.read_json(tmp_path / "half.json") is None
    out = results.write_csv(tmp_path / "t.csv", [{"a": 1}, {"a": 2, "b": 3}])
    assert out.read_text().splitlines() == ["a,b", "1,", "2,3"]


def test_check_writable(tmp_path):
    assert results.check_writable(tmp_path / "new" / "dir").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="--out"):
        results.check_writable(blocker / "x")


# ----------------------------------------------------------------------------- tables


def test_rows_to_csv_and_markdown():
    rows = [{"model": "a", "x": 0.5}, {"model": "b|c", "y": 2}]
    assert results.rows_to_csv(rows).decode().splitlines() == ["model,x,y", "a,0.5,", "b|c,,2"]
    assert results.rows_to_markdown(rows).splitlines() == [
        "| model | x | y |", "|---|---:|---:|", "| a | 0.5 |  |", "| b\\|c |  | 2 |"]
    assert results.rows_to_markdown([{"v": 1234.5678}, {"v": 0.12345}], digits=2).splitlines()[2:] \
        == ["| 1.2e+03 |", "| 0.12 |"]
    assert results.rows_to_markdown([]) == ""


def test_metric_and_display_rows():
    summaries = [{"depth": 0, "kind": "attention", "layer": "net.blocks.0.attn", "heads": 4,
                  "mean_mixing_distance": 1.23456, "locality_r1": 0.5, "input_dependence": 0.3},
                 {"depth": 1, "kind": "attention", "layer": "net.blocks.1.attn", "heads": 4,
                  "mean_mixing_distance": 2.0}]
    rows = results.metric_rows("vit", summaries, chosen=1)
    assert rows[0] == {"model": "vit", "depth": 0, "kind": "attention", "layer": "net.blocks.0.attn",
                       "heads": 4, "mean_mixing_distance": 1.2346, "locality_r1": 0.5, "shown": ""}
    assert rows[1]["shown"] == "◀"
    shown = results.display_rows(rows)
    assert shown[0] == {"model": "vit", "depth": 0, "kind": "attention", "distance": 1.2346,
                        "locality": 0.5}
    assert shown[1] == {"model": "**vit**", "depth": "**1**", "kind": "**attention**",
                        "distance": 2.0}


def test_robustness_tables():
    runs = [
        {"model": "m1", "clean_accuracy": 0.9, "mce": None,
         "adversarial": [{"attack": "pgd", "norm": "linf", "epsilon": 0.1, "robust_accuracy": 0.2},
                         {"attack": "pgd", "norm": "linf", "epsilon": 0.0, "robust_accuracy": 0.9}],
         "corruptions": [{"corruption": "fog", "severity": 1, "accuracy": 0.8},
                         {"corruption": "fog", "severity": 5, "accuracy": 0.4}]},
        {"model": "m2", "clean_accuracy": 0.8, "mce": 90.0, "adversarial": [], "corruptions": []},
    ]
    assert results.robust_accuracy_rows(runs) == [
        {"attack": "pgd", "norm": "linf", "epsilon": 0.0, "m1": 0.9},
        {"attack": "pgd", "norm": "linf", "epsilon": 0.1, "m1": 0.2}]
    assert results.corruption_error_rows(runs) == [
        {"corruption": "clean error", "m1": 10.0, "m2": 20.0},
        {"corruption": "fog", "m1": 40.0},
        {"corruption": "mCE (% of baseline)", "m1": None, "m2": 90.0}]
    runs[1]["mce"] = None                                   # no mCE anywhere: no mCE row
    assert [r["corruption"] for r in results.corruption_error_rows(runs)] == ["clean error", "fog"]
