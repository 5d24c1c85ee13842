import subprocess
import sys

import pytest


from conftest import run_prolab


def _prolab(*args, **kw):
    """The console entry in a real process: the exit status a shell sees."""
    return subprocess.run([sys.executable, "-m", "prolab", *args], capture_output=True, text=True, timeout=120, **kw)


def test_doctor():
    r = _prolab("doctor")
    assert r.returncode == 0, r.stderr
    assert "torch" in r.stdout and "device: " in r.stdout
    assert "qwen2.5-coder-1.5b-instruct-q4_k_m" in r.stdout and "ade20k_150 (150)" in r.stdout


def test_describe_unknown_dataset_is_a_clear_error():
    r = _prolab("describe", "--dataset", "not_a_dataset")
    assert r.returncode == 2 and "unknown dataset 'not_a_dataset'" in r.stderr


def test_describe_replay_miss_is_a_clear_error(tmp_path):
    (tmp_path / "c.txt").write_text("flux capacitor\n")
    r = run_prolab("describe", "--dataset", str(tmp_path / "c.txt"), "--cache_path", str(tmp_path / "none.jsonl"),
                "--out_root", str(tmp_path))
    assert r.returncode == 2
    assert "classes with prompt structured-" in r.stderr and "'flux capacitor'" in r.stderr
    assert not list(tmp_path.glob("c/*.json"))


def test_describe_flags_match_notebook_parameters():
    r = run_prolab("describe", "--help")
    for flag in ("--dataset", "--backend", "--llm", "--prompt", "--concurrency", "--max_attempts", "--llm_temperature",
                 "--max_tokens", "--repeat_penalty", "--seed", "--base_url", "--api_key_env"):
        assert flag in r.stdout


def test_train_flags_for_the_release_head_parse_to_their_types():
    """--aux_weight takes a number or none (the release's effective weight for the mode); --head_init and
    --normalize_bank reach the config; the demo preset's init and the paper preset's differ as documented."""
    import argparse

    from prolab import cli
    from prolab.cli import train as cli_train

    p = argparse.ArgumentParser()
    cli.add_train(p.add_subparsers())
    cfg = lambda *argv: cli_train.train_config(p.parse_args(["train", *argv]))  # noqa: E731
    assert cfg("--aux_weight", "none", "--mode", "category").aux_weight == 0.4
    assert cfg("--aux_weight", "none").aux_weight == 1.0 and cfg("--aux_weight", "0.7").aux_weight == 0.7
    c = cfg("--head_init", "release", "--normalize_bank", "false")
    assert (c.head_init, c.normalize_bank) == ("release", False)
    assert cfg().head_init == "pytorch" and cfg("--preset", "paper").head_init == "release"
    with pytest.raises(ValueError, match="head_init"):
        cfg("--head_init", "xavier")


def test_a_boolean_flag_takes_true_or_false_and_nothing_else(capsys):
    """`--amp on` was read as False (anything but 1/true/yes was): now on/off, yes/no, 1/0 and true/false, any
    case, and anything else is an error naming the value."""
    import argparse

    from prolab import cli
    from prolab.cli import train as cli_train

    p = argparse.ArgumentParser()
    cli.add_train(p.add_subparsers())
    read = lambda *argv: cli_train.train_config(p.parse_args(["train", *argv]))  # noqa: E731
    assert read("--normalize", "On").normalize is True and read("--normalize", "no").normalize is False
    with pytest.raises(SystemExit):
        p.parse_args(["train", "--normalize", "maybe"])
    assert "'maybe': expected true or false" in capsys.readouterr().err
