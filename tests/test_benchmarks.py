import os
import subprocess
import sys
from pathlib import Path

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


def test_full_rerun_keeps_the_gpu_section(tmp_path, monkeypatch):
    import benchmarks.__main__ as bench_main
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## GPU\n\n| gpu | row |\n\n## stale\n\n| old | row |\n")
    monkeypatch.setattr(bench_main, "BENCHMARKS",
                        {"only-one": lambda quick=False: [Row("x", "y", 2.0, "v", 1)]})
    assert main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "| gpu | row |" in text and "## only-one" in text
    assert "## stale" not in text                       # a removed benchmark's section goes


def test_heatmap_memory_benchmark_is_registered():
    from benchmarks.__main__ import _load_all
    _load_all()
    assert "heatmap-memory" in benchmarks.BENCHMARKS


def test_gpu_check_small_mode_on_cpu_writes_the_gpu_section(tmp_path):
    """``benchmarks/gpu_check.sh --small``: the GPU script's CPU mode, as CI can run it."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## attacks\n\n| keep | me |\n")
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--small", "--out",
                           str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "## GPU" in text and "| keep | me |" in text and "small CPU mode" in text
    for what in ("clean evaluation", "timm's eval loop", "all 15 ImageNet-C corruptions",
                 "corrupt jpeg_compression", "our PGD-10", "end-to-end probe.robustness.run"):
        assert what in text and what in proc.stdout, what
    gpu = text.split("## GPU")[1]
    assert gpu.count("\n| ") >= 1 + 1 + 1 + 15 + 1 + 1       # header, clean, total, 15, PGD, run
