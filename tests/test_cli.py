import subprocess
import sys


def _prolab(*args, **kw):
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
    r = _prolab("describe", "--dataset", str(tmp_path / "c.txt"), "--cache_path", str(tmp_path / "none.jsonl"),
                "--out_root", str(tmp_path))
    assert r.returncode == 2
    assert "classes with prompt structured-" in r.stderr and "'flux capacitor'" in r.stderr
    assert not list(tmp_path.glob("c/*.json"))


def test_describe_flags_match_notebook_parameters():
    r = _prolab("describe", "--help")
    for flag in ("--dataset", "--backend", "--llm", "--prompt", "--concurrency", "--max_attempts", "--llm_temperature",
                 "--max_tokens", "--repeat_penalty", "--seed", "--base_url", "--api_key_env"):
        assert flag in r.stdout
