import pytest

from reflectevo.config import RoundConfig, load_config


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"limit": 5, "generate": {"reflections": 3}, "model": "tiny"}')
    cfg = load_config(str(path), {"limit": 7, "model": None})
    assert (cfg.limit, cfg.model, cfg.generate.reflections) == (7, "tiny", 3)


def test_yaml_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: 3\n")
    assert load_config(str(path), {}).train.max_steps == 3


@pytest.mark.parametrize("text,message", [
    ('{"limit": 5,\n "generate": {"reflections": 3,}}', "c.json, line 2: not valid JSON"),
    ('{"generate": {"reflection": 3}}', "field 'generate.reflection': Extra inputs are not permitted"),
    ('{"limit": "many"}', "field 'limit'"),
    ('[1, 2]', "expected a mapping"),
])
def test_bad_config_names_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
        load_config(str(path), {})
    assert str(path) in str(e.value)


def test_defaults_are_the_embedded_demo():
    cfg = RoundConfig()
    assert cfg.model == "smollm2-135m" and cfg.tasks == ["choice", "math"]
    assert (cfg.train.lora_r, cfg.train.lora_alpha, cfg.train.lora_dropout) == (8, 32, 0.1)


@pytest.mark.parametrize("cuda,cpu_bf16,stored,expected", [
    (False, True, "bfloat16", "bfloat16"),  # a CPU with AVX-512 BF16 (AMX): the checkpoint's bf16
    (False, False, "bfloat16", "float32"),  # without it bf16 is slow: float32
    (False, True, "float32", "float32"),  # a float32 checkpoint (the tiny test models) stays float32
    (False, True, "float16", "float32"),
    (True, False, "float16", "float16"),
])
def test_auto_dtype_is_the_checkpoints_where_the_hardware_runs_it(monkeypatch, cuda, cpu_bf16, stored, expected):
    import torch

    from reflectevo.config import EngineConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16)
    assert EngineConfig().resolved_dtype(stored) == expected
    assert EngineConfig(dtype="float32").resolved_dtype(stored) == "float32"


@pytest.mark.parametrize("cuda, cpu_bf16, stored, expected", [
    (False, True, "bfloat16", True),  # SmolLM2 on a CPU with bf16 kernels: bf16 mixed precision, as the engine
    (False, False, "bfloat16", False),
    (False, True, "float32", False),  # the tiny float32 models train in fp32 everywhere
])
def test_auto_training_precision_follows_the_engines_rule(monkeypatch, cuda, cpu_bf16, stored, expected):
    import torch

    from reflectevo.config import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16)
    assert TrainConfig().bf16(stored) is expected
    assert TrainConfig(dtype="bfloat16").bf16(stored) and not TrainConfig(dtype="float32").bf16(stored)
