"""A model's sizes without loading its weights: its shapes (layers, widths, vocabulary) and
parameter counts from its config.json (local directory, alias, or the local Hugging Face
cache, instantiated on the meta device), else from the published figures below; and its
token counter (its own tokenizer when local, else characters / chars_per_token). Read by
`lab estimate`: the FLOPs (lab/study/estimate.py) and the memory plan (lab/study/memory.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lab.core.errors import LabError

# hub id -> (layers, d_model, heads, kv_heads, head_dim, d_ff, vocab, context): the models'
# config.json files (Qwen2.5 base, Pythia), used when the config is not available locally.
PUBLISHED_SHAPES: dict[str, tuple[int, int, int, int, int, int, int, int]] = {
    "Qwen/Qwen2.5-0.5B": (24, 896, 14, 2, 64, 4864, 151_936, 32768),
    "Qwen/Qwen2.5-1.5B": (28, 1536, 12, 2, 128, 8960, 151_936, 131072),
    "Qwen/Qwen2.5-3B": (36, 2048, 16, 2, 128, 11008, 151_936, 32768),
    "Qwen/Qwen2.5-7B": (28, 3584, 28, 4, 128, 18944, 152_064, 131072),
    "EleutherAI/pythia-70m": (6, 512, 8, 8, 64, 2048, 50_304, 2048),
    "EleutherAI/pythia-160m": (12, 768, 12, 12, 64, 3072, 50_304, 2048),
    "EleutherAI/pythia-410m": (24, 1024, 16, 16, 64, 4096, 50_304, 2048),
    "EleutherAI/pythia-1b": (16, 2048, 8, 8, 256, 8192, 50_304, 2048),
    "EleutherAI/pythia-1.4b": (24, 2048, 16, 16, 128, 8192, 50_304, 2048),
    "EleutherAI/pythia-2.8b": (32, 2560, 32, 32, 80, 10240, 50_304, 2048),
    "EleutherAI/pythia-6.9b": (32, 4096, 32, 32, 128, 16384, 50_432, 2048),
    "EleutherAI/pythia-12b": (36, 5120, 40, 40, 128, 20480, 50_688, 2048),
}


@dataclass(frozen=True)
class Shape:
    layers: int
    d: int
    heads: int
    kv_heads: int
    head_dim: int
    d_ff: int
    vocab: int

    @property
    def layer_params(self) -> int:
        return (
            2 * self.d * self.heads * self.head_dim
            + 2 * self.d * self.kv_heads * self.head_dim
            + 3 * self.d * self.d_ff
        )


def shape_of(spec: str, config: Any | None) -> Shape:
    """The model's shapes from its config (local), else the published ones."""
    if config is not None:
        c = getattr(config, "text_config", config)
        heads = c.num_attention_heads
        return Shape(
            c.num_hidden_layers,
            c.hidden_size,
            heads,
            getattr(c, "num_key_value_heads", None) or heads,
            getattr(c, "head_dim", None) or c.hidden_size // heads,
            getattr(c, "intermediate_size", None) or 4 * c.hidden_size,
            c.vocab_size,
        )
    published = published_shape(spec)
    if published is None:
        raise LabError(
            f"no local config for '{spec}' and no published shapes; download its config.json "
            "first, or add it to lab/study/model_sizes.py PUBLISHED_SHAPES"
        )
    return Shape(*published[:7])


def published_shape(spec: str) -> tuple[int, int, int, int, int, int, int, int] | None:
    """PUBLISHED_SHAPES' row for a hub id (a `-deduped` Pythia has its base's shape)."""
    return PUBLISHED_SHAPES.get(re.sub(r"-deduped$", "", spec))


# Published parameter counts, used when the model's config is not available locally:
# hub id -> (all parameters, tied embeddings); vocab and d_model come from the same models'
# shapes (PUBLISHED_SHAPES above). Qwen2.5 model cards (0.5B/1.5B/3B tie the
# embeddings, 7B does not); Pythia README (untied embed_in/embed_out).
PUBLISHED: dict[str, tuple[int, bool]] = {
    "Qwen/Qwen2.5-0.5B": (494_032_768, True),
    "Qwen/Qwen2.5-1.5B": (1_543_714_304, True),
    "Qwen/Qwen2.5-3B": (3_085_938_688, True),
    "Qwen/Qwen2.5-7B": (7_615_616_512, False),
    "EleutherAI/pythia-70m": (70_426_624, False),
    "EleutherAI/pythia-160m": (162_322_944, False),
    "EleutherAI/pythia-410m": (405_334_016, False),
    "EleutherAI/pythia-1b": (1_011_781_632, False),
    "EleutherAI/pythia-1.4b": (1_414_647_808, False),
    "EleutherAI/pythia-2.8b": (2_775_208_960, False),
    "EleutherAI/pythia-6.9b": (6_857_302_016, False),
    "EleutherAI/pythia-12b": (11_846_072_320, False),
}


@dataclass(frozen=True)
class Sizes:
    total: int  # all parameters (a tied head counted once)
    body: int  # decoder body: the N of the FLOP accounting
    head: int  # LM head, vocab x d
    linear_io: int  # sum of (in + out) features over the body's linear layers: LoRA adds r x this
    source: str  # config | published


def published_sizes(spec: str) -> Sizes | None:
    shape = published_shape(spec)
    counts = PUBLISHED.get(re.sub(r"-deduped$", "", spec))
    if shape is None or counts is None:
        return None
    (total, tied), d, vocab = counts, shape[1], shape[6]
    head = vocab * d
    body = total - head * (1 if tied else 2)
    # A transformer layer holds ~12 d^2 parameters in linear layers whose (in + out) sum to
    # ~18 d (attention 8 d, MLP ~10 d): linear_io ~ 1.5 x body / d.
    return Sizes(total, body, head, int(1.5 * body / d), "published")


def param_counts(spec: str, cache_dir: str | None = None) -> Sizes:
    """The model's parameter counts without loading any weights (meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lab.core.errors import LabError
    from lab.study.models import resolve_model

    hub = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    try:
        path = spec if hub else resolve_model(spec, cache_dir).path
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        config = None
    if config is None:
        pub = published_sizes(spec)
        if pub is None:
            raise LabError(
                f"no local config for '{spec}' and no published parameter count; download the "
                "model (or its config.json) first, or add it to lab/study/model_sizes.py PUBLISHED"
            )
        return pub
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    body = total - emb.numel() - (0 if head is emb else head.numel())
    out_emb = model.get_output_embeddings()
    linear_io = sum(
        m.in_features + m.out_features
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m is not out_emb
    )
    return Sizes(total, body, head.numel(), linear_io, "config")


def token_counter(spec: str, cache_dir: str | None, chars_per_token: float):  # noqa: ANN201
    """text -> token count: the model's own tokenizer when it is available locally (alias,
    local directory, tiny model, or the local HF cache), else characters / chars_per_token.
    Memoised (the same prompts are counted for many cells)."""
    from transformers import AutoTokenizer

    from lab.study.models import resolve_model

    hub = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    try:
        path = spec if hub else resolve_model(spec, cache_dir).path
        tk = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        tk = None
    memo: dict[str, float] = {}

    def count(text: str) -> float:
        if text not in memo:
            memo[text] = (
                len(tk(text, add_special_tokens=False).input_ids)
                if tk is not None
                else len(text) / chars_per_token
            )
        return memo[text]

    count.exact = tk is not None  # type: ignore[attr-defined]
    count.tokenizer = tk  # type: ignore[attr-defined]
    return count


def frame_tokens(count: Any, prompt_cfg: Any, demos: list[Any], fmt: str) -> float:
    """Tokens the study's prompt style adds around each question (`count` from
    `token_counter`): the demos, and in chat style the template's turns (lab/core/chat.py),
    counted with the model's special tokens; plain text where the model's tokenizer is not
    at hand or has no template."""
    from lab.core.chat import frame, has_chat_template

    tk = getattr(count, "tokenizer", None)
    chat = prompt_cfg.style == "chat" and tk is not None and has_chat_template(tk)
    fr = frame(tk, demos, fmt, "chat" if chat else "plain", prompt_cfg.demos)
    return count(fr.prefix + fr.tail)


def model_config(spec: str, cache_dir: str | None) -> Any | None:
    from transformers import AutoConfig

    from lab.study.models import resolve_model

    hub = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    try:
        path = spec if hub else resolve_model(spec, cache_dir).path
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        return None
