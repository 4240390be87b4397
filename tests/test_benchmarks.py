import benchmarks
from benchmarks import Row, register
from benchmarks.__main__ import main


def test_harness_rewrites_benchmarks_md(tmp_path):
    name = "test-only-harness"
    if name not in benchmarks.BENCHMARKS:
        @register(name)
        def _bench(quick=False):
            return [Row("sum of a list", "itself", 1.0, "n/a", 1)]
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## other\n\n| keep | me |\n")
    assert main(["--only", name, "--out", str(out)]) == 0
    text = out.read_text()
    assert f"## {name}" in text and "| sum of a list | itself | 1.00 | n/a | 1 |" in text
    assert "| keep | me |" in text and "Machine:" in text


def test_registered_benchmarks_are_found():
    from benchmarks.__main__ import _load_all
    _load_all()
    assert "zoo-throughput" in benchmarks.BENCHMARKS


def test_paired_ratio_interleaves_baseline_and_ours():
    log = []
    benchmarks.paired_ratio(lambda: log.append("o"), lambda: log.append("b"), rounds=3)
    assert "".join(log[:4]) == "oobb"                  # untimed warm-up of each side
    assert "".join(log[4:]) == "bbbooo" * 3            # each round: baseline then ours, back to back
