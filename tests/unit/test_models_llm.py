"""Unit tests for models/: the tiny test Llama, the architecture config writer and the HF import.

No vLLM engine starts here (that is models.smoke_vllm's job); tests that touch the BentoML model store
point it at a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from models import build_tiny_llm as tiny
from models import import_hf
from models import write_arch_config as arch

CPU_HEAD_SIZES = {32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512}  # vLLM CPU attention


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_tiny_llm(tmp_path_factory.mktemp("tiny") / "tiny-llm", seed=0)


@pytest.fixture
def bentoml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private BentoML home: the env var for subprocesses, the patched store for this process."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    home = tmp_path / "bentoml"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    with BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))):
        yield home


def test_tiny_llm_is_deterministic(tiny_dir: Path, tmp_path: Path) -> None:
    again = tiny.build_tiny_llm(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert sha256(again / name) == sha256(tiny_dir / name), name
    other = tiny.build_tiny_llm(tmp_path / "other", seed=1)
    assert sha256(other / "model.safetensors") != sha256(tiny_dir / "model.safetensors")
    assert tiny.content_hash(again) == tiny.content_hash(tiny_dir)


def test_tiny_llm_shape(tiny_dir: Path) -> None:
    from safetensors import safe_open

    cfg = json.loads((tiny_dir / "config.json").read_text())
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    assert head_dim == cfg["head_dim"] == 32 and head_dim in CPU_HEAD_SIZES
    assert (cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["intermediate_size"]) == (2, 2, 128)
    assert cfg["vocab_size"] == tiny.VOCAB_SIZE and cfg["max_position_embeddings"] == 2048
    with safe_open(str(tiny_dir / "model.safetensors"), "pt") as weights:
        assert weights.get_slice("model.embed_tokens.weight").get_shape() == [tiny.VOCAB_SIZE, 64]
        assert weights.get_slice("model.layers.1.self_attn.k_proj.weight").get_shape() == [64, 64]


def test_tiny_tokenizer_round_trips(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))  # what vLLM loads
    assert len(tok) == tiny.VOCAB_SIZE
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token) == ("<s>", "</s>", "<unk>", "<pad>")
    for text in ("Beautiful is better than ugly.", "  two spaces\n\ttab", "naïve café, 日本語 ✓", ""):
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    prompt = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == "<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    assert tok(prompt, add_special_tokens=False)["input_ids"].count(tok.bos_token_id) == 1


def test_register_in_bentoml_is_idempotent(tiny_dir: Path, bentoml_home: Path) -> None:
    import bentoml

    tag = tiny.register_in_bentoml(tiny_dir, "tiny-llm")
    assert tiny.register_in_bentoml(tiny_dir, "tiny-llm") == tag
    assert len(bentoml.models.list("tiny-llm")) == 1
    model = bentoml.models.get(tag)
    assert Path(model.path).is_relative_to(bentoml_home)
    assert model.info.metadata[tiny.CONTENT_HASH_KEY] == tiny.content_hash(tiny_dir)
    assert sha256(Path(model.path) / "model.safetensors") == sha256(tiny_dir / "model.safetensors")


@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One preset per tokenizer family (the llama presets share the llama-3.1-8b tokenizer)."""
    root = tmp_path_factory.mktemp("arch")
    return {p: arch.write_arch_config(p, root / p) for p in ("llama-3.1-8b", "qwen2.5-0.5b")}


def test_llama_3_1_8b_config_fields(arch_dirs: dict[str, Path]) -> None:
    out = arch_dirs["llama-3.1-8b"]
    cfg = json.loads((out / "config.json").read_text())
    expected = {
        "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336,
        "vocab_size": 128256, "rope_theta": 500000.0, "max_position_embeddings": 131072,
        "torch_dtype": "bfloat16", "bos_token_id": 128000, "tie_word_embeddings": False,
    }  # fmt: skip
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip
    assert abs(arch.param_count(cfg) - 8.03e9) < 0.01e9
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert (tok_cfg["bos_token"], tok_cfg["eos_token"]) == ("<|begin_of_text|>", "<|eot_id|>")
    assert "<|start_header_id|>" in tok_cfg["chat_template"]
    assert not any(out.glob("*.safetensors"))


@pytest.mark.parametrize("preset", sorted(arch.PRESETS))
def test_arch_presets_fit_cpu_attention(preset: str) -> None:
    cfg = arch.PRESETS[preset].config
    assert cfg["head_dim"] in CPU_HEAD_SIZES
    assert cfg["hidden_size"] == cfg["num_attention_heads"] * cfg["head_dim"]
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0


def test_num_layers_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arch, "save_tokenizer", lambda *args, **kwargs: None)  # config only: fast
    out = arch.write_arch_config("llama-3.2-1b", tmp_path / "small", num_layers=2)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and cfg["hidden_size"] == 2048


@pytest.mark.parametrize("scheme", arch.QUANT_SCHEMES)
def test_quant_scheme_declares_the_quantizers_format(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dummy-weight checkpoint in each format models.quantize makes (CI compares the configs with
    the quantizer's real output: tests/integration/test_quantization.py)."""
    from models.quantize import SCHEMES

    assert set(arch.QUANT_SCHEMES) == set(SCHEMES)
    monkeypatch.setattr(arch, "save_tokenizer", lambda *args, **kwargs: None)
    cfg = json.loads(
        (arch.write_arch_config("llama-3.1-8b", tmp_path, quant_scheme=scheme) / "config.json").read_text()
    )
    quant = cfg["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors" and quant["ignore"] == ["lm_head"]
    weights = quant["config_groups"]["group_0"]["weights"]
    assert weights["num_bits"] == (8 if scheme == "fp8-dynamic" else 4)
    assert weights["symmetric"] is (scheme != "w4a16-awq")  # AWQ keeps zero points
    plain = json.loads(
        (arch.write_arch_config("llama-3.1-8b", tmp_path / "bf16") / "config.json").read_text()
    )
    assert "quantization_config" not in plain


@pytest.mark.parametrize("preset", ["llama-3.1-8b", "qwen2.5-0.5b"])
def test_arch_tokenizer_has_exactly_vocab_size(preset: str, arch_dirs: dict[str, Path]) -> None:
    from tokenizers import Tokenizer

    out = arch_dirs[preset]
    cfg = json.loads((out / "config.json").read_text())
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == cfg["vocab_size"]
    assert tok.id_to_token(cfg["vocab_size"] - 1) is not None
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    eos_ids = cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]]
    assert tok.token_to_id(tok_cfg["eos_token"]) in eos_ids


@pytest.mark.parametrize("preset", ["llama-3.1-8b", "qwen2.5-0.5b"])
def test_arch_tokenizer_loads_in_transformers(preset: str, arch_dirs: dict[str, Path]) -> None:
    """vLLM loads it with AutoTokenizer; transformers 5 turns any qwen2 one into Qwen2Tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(arch_dirs[preset]))
    vocab_size = arch.PRESETS[preset].config["vocab_size"]
    assert len(tok) == vocab_size
    first_special = min(tok.all_special_ids)
    rng = random.Random(0)
    ids = [rng.randrange(256, first_special) for _ in range(200)]
    assert tok(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert tok.decode(tok(chat, add_special_tokens=False)["input_ids"]) == chat


def test_import_refuses_dir_without_config(tmp_path: Path, bentoml_home: Path) -> None:
    import bentoml

    src = tmp_path / "not-a-model"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        import_hf.import_hf_model(src, "broken")
    assert bentoml.models.list() == []
    with pytest.raises(SystemExit):
        import_hf.main([str(src), "--name", "broken"])


def test_import_hf_copies_and_labels(tiny_dir: Path, tmp_path: Path, bentoml_home: Path) -> None:
    import bentoml

    tag = import_hf.import_hf_model(tiny_dir, "imported")
    model = bentoml.models.get(tag)
    assert model.info.metadata["model_type"] == "llama"
    assert model.info.labels["source"] == "hf-import"
    assert sorted(p.name for p in Path(model.path).iterdir() if p.name != "model.yaml") == sorted(
        p.name for p in tiny_dir.iterdir()
    )
    config_only = tmp_path / "dummy"
    config_only.mkdir()
    (config_only / "config.json").write_text(json.dumps(arch.PRESETS["qwen2.5-0.5b"].config))
    with pytest.raises(FileNotFoundError, match="weight"):
        import_hf.import_hf_model(config_only, "dummy")
    assert import_hf.import_hf_model(config_only, "dummy", require_weights=False).startswith("dummy:")
