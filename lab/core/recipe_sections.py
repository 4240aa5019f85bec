"""The sections of a recipe (`train`, `arms[]`, `task`, `eval`, `tracking`, `distributed`):
each a strict pydantic model, validated as part of a `Recipe` (lab/core/recipe.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.core.errors import LabError
from lab.core.formats import PromptFormat

Format = Literal["answer", "cot", "code", "cot_self"]
Method = Literal["icl", "lora", "full", "ttt"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraCfg(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainCfg(Strict):
    steps: int = Field(100, gt=0, description="optimizer steps")
    batch_size: int = Field(16, gt=0, description="examples per optimizer step, all processes")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = Field(1.0, gt=0)
    n_train: int | None = Field(None, gt=0, description="train examples used; None = the pool")
    select: Literal["last", "best_dev"] = Field(
        "last",
        description="checkpoint the comparison uses: the last one, or (best_dev) the one with "
        "the lowest loss on examples held out from inside the arm's own budget (lab/core/fairness.py)",
    )
    dev_fraction: float = Field(
        0.25, gt=0, lt=1, description="select: best_dev: share of the budget held out to select on"
    )
    eval_every: int = Field(10, gt=0, description="steps between ID-dev loss evaluations")
    save_every: int = Field(
        25, ge=0, description="steps between resume checkpoints (crash recovery); 0 = none"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass (less memory, ~1.3x time)"
    )
    lora: LoraCfg = LoraCfg()

    def micro_batch(self, processes: int, who: str = "") -> int:
        """Rows per process and forward: the global batch split over grad_accum x processes,
        which must divide it (the one check: planning and training both ask here)."""
        if self.batch_size % (self.grad_accum * processes):
            raise LabError(
                f"{who}train.batch_size ({self.batch_size}) is not a multiple of grad_accum x "
                f"processes ({self.grad_accum} x {processes}); change train.batch_size or "
                "train.grad_accum"
            )
        return self.batch_size // (self.grad_accum * processes)


KNN = "knn"  # `demos: knn`: each query's k nearest examples of the budget (eval/retrieve.py)
ALL = "all"  # `k: all`: every example of the budget as demos (many-shot)


class TttCfg(Strict):
    """Test-time training (`method: ttt`, train/ttt.py): a temporary LoRA trained on
    leave-one-out tasks built from the arm's k demos, then discarded."""

    per_query: bool = Field(
        False, description="one adapter per query instead of one per evaluation split (costly)"
    )
    steps: int = Field(8, gt=0, description="optimizer steps per adapter")
    batch_size: int = Field(4, gt=0, description="leave-one-out tasks per step")
    lr: float = Field(1e-3, gt=0)
    permutations: int = Field(
        2, gt=0, description="orders of the other demos per held-out demo (tasks = k x this)"
    )
    lora: LoraCfg = LoraCfg(dropout=0.0)


class ArmCfg(Strict):
    name: str
    method: Method
    format: Format = "answer"
    k: int | Literal["all"] = Field(
        0,
        description="demos in the prompt; 'all' (many-shot): every example of the budget, cut "
        "to what fits the context (recorded: k vs k_requested)",
    )
    trigger: str | None = Field(None, description="text after 'Answer:', e.g. zero-shot CoT")
    demos: str | None = Field(
        None,
        description="a fixed demo set of the task (e.g. 'wei': split 'demos_wei'): its first k "
        "examples, the same for every seed and budget, not drawn from the budgeted train pool; "
        "or 'knn': for each query its k nearest examples of the budget (BM25 over the inputs)",
    )
    train_k: int = Field(
        0,
        ge=0,
        description="in-context fine-tuning (FT arms): demos in each training input, drawn "
        "anew for every draw from the arm's training set minus the target; evaluated with "
        "the first train_k examples of the budget as demos (those of the k-shot ICL arm)",
    )
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of `train`")
    ttt: TttCfg = Field(TttCfg(), description="method: ttt: the test-time adapter's settings")

    @property
    def retrieved(self) -> bool:
        """`demos: knn`: per-query demos retrieved from the budget."""
        return self.demos == KNN

    @property
    def fixed_demos(self) -> bool:
        """A fixed demo set of the task (`demos: wei`), not drawn from the budget."""
        return self.demos is not None and self.demos != KNN

    @field_validator("k", mode="before")
    @classmethod
    def _k(cls, value: Any) -> Any:
        if value != ALL and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("k must be a number of demos (>= 0) or 'all' (many-shot)")
        return value

    @model_validator(mode="after")
    def _check(self) -> ArmCfg:
        where = f"arm '{self.name}'"
        if self.method == "icl" and self.train:
            raise ValueError(f"{where} is an ICL arm: remove its `train:` section")
        if self.method == "ttt" and self.train:
            raise ValueError(
                f"{where} is a test-time training arm: remove its `train:` section (its "
                "adapter is set in `ttt:`)"
            )
        if self.method != "ttt" and self.ttt != TttCfg():
            raise ValueError(f"{where}: `ttt:` needs method: ttt; remove it")
        if self.method == "ttt" and self.format != "answer":
            raise ValueError(
                f"{where}: test-time training runs on the answer format; set format: answer"
            )
        if self.k == ALL and self.method != "icl":
            raise ValueError(
                f"{where}: k: all (many-shot) needs an ICL arm; for in-context fine-tuning "
                "set train_k instead"
            )
        if self.demos is not None and (self.method != "icl" or self.k == 0):
            raise ValueError(
                f"{where}: `demos` (a fixed demo set or knn) needs an ICL arm with k > 0; "
                "remove `demos` or set method: icl and k"
            )
        if self.demos is not None and self.k == ALL:
            raise ValueError(
                f"{where}: `demos: {self.demos}` takes a number of demos, not k: all; set k"
            )
        if self.format == "cot_self" and (self.train_k or self.retrieved):
            raise ValueError(
                f"{where}: format cot_self (self-written rationales) does not combine with "
                "train_k or demos: knn yet; use format cot, or drop train_k / demos"
            )
        if self.train_k and self.method in ("icl", "ttt"):
            raise ValueError(
                f"{where}: train_k (in-context fine-tuning) needs method lora or full; "
                "remove train_k or set k for an ICL arm"
            )
        return self


class TaskCfg(Strict):
    name: str = "arithmetic"
    seed: int = 0
    n_train: int = Field(2000, gt=0)
    n_dev: int = Field(100, ge=0)
    n_test: int = Field(100, gt=0, description="examples in each eval split (ID and OOD)")
    source: Literal["local", "hub"] = Field(
        "local", description="benchmark tasks: the copies in data/ or the Hugging Face hub"
    )
    data_dir: str | None = Field(
        None, description="benchmark tasks, source local: the data folder; None = <repo>/data"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="task-specific options")
    spec: dict[str, Any] | None = Field(
        None, description="a declarative task inline (lab/tasks/spec.py); None = by name"
    )


class EvalCfg(Strict):
    batch_size: int = Field(32, gt=0)
    max_new_tokens: dict[Format, Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: {"answer": 10, "cot": 72, "code": 72},
        description="generation budget per format (> 0: a 0 would generate no answer at all)",
    )
    code_timeout_s: float = Field(5.0, gt=0)
    gold_logprob: bool = Field(True, description="also score log p(gold answer): a smooth metric")
    ft_then_icl_k: int = Field(
        0, ge=0, description="also prompt each FT model with k demos: does FT keep ICL?"
    )
    precision: Literal["study", "bf16", "fp32"] = Field("study", description="study: `precision`")
    invariant: bool = Field(
        True,
        description="batch-invariant numerics (eval/invariant.py): scores bit-identical whatever "
        "the batch size, grouping and process count; false: faster kernels (README)",
    )
    formats: Annotated[int, Field(ge=1)] | list[str | PromptFormat] | None = Field(
        None,
        description="format spread (lab/core/formats.py): every arm is also evaluated in N "
        "sampled prompt formats (seeded by task.seed), or in the listed ones (names or inline "
        "formats); None = the lab's template only",
    )

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, v: Any) -> Any:
        """Inline formats validated one by one: an error names the entry and the key."""
        if not isinstance(v, list):
            return v
        out = []
        for i, entry in enumerate(v):
            if isinstance(entry, dict):
                try:
                    entry = PromptFormat(**entry)
                except ValidationError as e:
                    err = e.errors()[0]
                    key = ".".join(map(str, err["loc"]))
                    msg = err["msg"].removeprefix("Value error, ")
                    raise ValueError(f"formats[{i}]{'.' + key if key else ''}: {msg}") from None
            out.append(entry)
        return out


class PromptCfg(Strict):
    """How every arm's prompt is laid out (lab/core/chat.py): the same for training and
    evaluation, the same for every arm of a study."""

    style: Literal["plain", "chat"] = Field(
        "plain",
        description="plain: the lab's text template; chat: the same text inside the tokenizer's "
        "chat template (user turn, then the assistant's generation prompt)",
    )
    demos: Literal["single_turn", "multi_turn"] = Field(
        "single_turn",
        description="chat: the k demos and the question in one user message (single_turn), or "
        "each demo's question a user turn and its answer an assistant turn (multi_turn)",
    )

    @model_validator(mode="after")
    def _check(self) -> PromptCfg:
        if self.style == "plain" and self.demos != "single_turn":
            raise ValueError("prompt.demos: multi_turn needs prompt.style: chat")
        return self


class TrackingCfg(Strict):
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "ft-vs-icl"
    entity: str | None = None
    max_upload_mb: float = Field(
        200.0,
        ge=0,
        description="fine-tuned weights larger than this are logged to W&B by path, not uploaded",
    )


class DistributedCfg(Strict):
    timeout_s: float = Field(
        3600.0,
        gt=0,
        description="seconds a process waits in a collective before the run fails: longer than "
        "the main process's work the others wait for (saving 7B, W&B uploads)",
    )
