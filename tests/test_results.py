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
