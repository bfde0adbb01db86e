"""Smoke tests of the benchmark scripts at tiny widths: they run and print the figures they promise."""

import re

from click.testing import CliRunner

from benchmarks import baselines, generator, train_step


def test_generator_benchmark_prints_time_flops_and_params():
    args = ["--device", "cpu", "--resolution", "32", "--batch", "1", "--batch", "2", "--repeats", "1", "--warmup",
            "0", "--channel-base", "256", "--channel-max", "16", "--impl", "fast"]
    result = CliRunner().invoke(generator.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^\s+fast\s+32\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+\d+\s+(\d+)$",
                      result.output, re.M)
    assert [r[0] for r in rows] == ["1", "2"], result.output
    assert all(int(r[5]) > 100 for r in rows)  # the process's peak RSS in MB: torch alone takes more
    # ms/img and GFLOP/img are positive; GFLOP/s is printed to 0.1 and may round to 0.0 on a loaded machine (speed
    # belongs to the benchmark's figures, not to a test).
    assert all(float(r[1]) > 0 and float(r[3]) > 0 and float(r[4]) >= 0 for r in rows)
    assert "G+D training step" not in result.output  # off by default on the CPU
    assert re.search(r"G at 32: [\d,]+ trainable parameters", result.output)


def test_generator_benchmark_times_each_layer_and_names_the_variants():
    args = ["--device", "cpu", "--resolution", "32", "--batch", "1", "--repeats", "1", "--warmup", "0",
            "--channel-base", "256", "--channel-max", "16", "--impl", "fast", "--impl", "ref", "--layers",
            "--clock", "cpu"]
    result = CliRunner().invoke(generator.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "slowest layers of fast at 32" in result.output and "slowest layers of ref at 32" in result.output
    assert re.search(r"^\s+[\d.]+\s+synthesis\.b32\.conv1$", result.output, re.M)
    assert re.search(r"variants: conv 16 16 16 16 1 \w+;", result.output)
    assert re.search(r"^\s+ref\s+32\s+1\s", result.output, re.M)


def test_generator_benchmark_rejects_a_bad_resolution():
    result = CliRunner().invoke(generator.main, ["--device", "cpu", "--resolution", "48"])
    assert result.exit_code == 2 and "48" in result.output


def test_train_step_benchmark_times_the_tiny_preset():
    result = CliRunner().invoke(train_step.main, ["--cfg", "tiny", "--steps", "1", "--batch", "2", "--batch-gpu", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert re.search(r"^tiny\s+cpu\s+32\s+2\s+2\s+[\d.]+\s+[\d.]+\s+[\d.]+$", result.output, re.M), result.output


def test_baselines_benchmark_prints_seconds_per_image():
    args = ["--resolution", "32", "--method", "telea", "--method", "patchmatch", "--mask", "center", "--repeats", "1"]
    result = CliRunner().invoke(baselines.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^(\S+)\s+32\s+center\s+0\.25\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", result.output, re.M)
    assert [r[0] for r in rows] == ["telea", "patchmatch"], result.output
