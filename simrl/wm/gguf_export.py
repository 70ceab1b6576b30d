"""A fine-tuned model back into GGUF, for the ``llamacpp`` world-model backend (the fastest on CPU).

``simrl wm train`` fine-tunes a base that is often a GGUF file (``smollm2``: the packaged SmolLM2 Q4_1)
and saves a Hugging Face folder. :func:`export_gguf` writes that folder's weights into a GGUF laid out
exactly as the base: every metadata field of the base (architecture, hyper-parameters, tokenizer, chat
template) is copied, ``general.file_type`` excepted, and each of the base's tensors is replaced by the
trained one of the same role. Names map with gguf-py's ``TensorNameMap`` (Hugging Face
``model.layers.N.self_attn.q_proj`` -> ``blk.N.attn_q``); Llama's query and key weights are permuted
for llama.cpp's rotary layout as llama.cpp's ``convert_hf_to_gguf.py`` does (``LlamaModel.permute``), the
inverse of what transformers' GGUF loader undoes. 1-D tensors (norms) stay F32; matrices become Q8_0
(or F16). The architecture must be one whose tensors need no other conversion: ``llama`` (SmolLM2,
Llama); the base's vocabulary is kept, so the tokenizer must not have changed in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simrl.errors import SimrlError

ARCHITECTURES = ("llama",)
"""Base architectures :func:`export_gguf` converts (their tensors map one to one, q/k permuted)."""
TYPES = ("q8_0", "f16")


def _permute(weights: Any, n_head: int) -> Any:
    """Rows of a query/key weight reordered for llama.cpp's rotary layout (``convert_hf_to_gguf.py``)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _hf_weights(folder: Path) -> dict[str, Any]:
    """Every tensor of the folder's ``*.safetensors`` files, as float32 numpy arrays."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SimrlError(f"{folder}: no *.safetensors files (a `simrl wm train` model folder has them)")
    weights = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                weights[key] = f.get_tensor(key).float().numpy()
    return weights


def _trained(model_dir: Path, arch: str, blocks: int) -> dict[str, Any]:
    """The folder's tensors by GGUF name (tied embeddings give ``output.weight`` too)."""
    import gguf

    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), blocks)
    trained = {}
    for key, value in _hf_weights(model_dir).items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is not None:
            trained[name] = value
    if "output.weight" not in trained and "token_embd.weight" in trained:
        trained["output.weight"] = trained["token_embd.weight"]
    return trained


def _copy_metadata(reader: Any, writer: Any, qtype: str) -> None:
    """Every metadata field of the base but the file's own, and the new file type."""
    import gguf

    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name in ("general.architecture", "general.file_type"):
            continue
        kind = f.types[0]
        writer.add_key_value(f.name, f.contents(), kind,
                             sub_type=f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)


def _add(writer: Any, name: str, data: Any, heads: tuple[int, int], qtype: str) -> None:
    """One tensor: q/k permuted, 1-D as F32, matrices as ``qtype``."""
    import gguf
    import numpy as np

    if name.endswith("attn_q.weight"):
        data = _permute(data, heads[0])
    elif name.endswith("attn_k.weight"):
        data = _permute(data, heads[1])
    if data.ndim == 1:
        writer.add_tensor(name, data.astype(np.float32))
    elif qtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        kind = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)


def export_gguf(model_dir: str | Path, base_gguf: str | Path, out: str | Path, *, qtype: str = "q8_0") -> Path:
    """Write ``model_dir``'s weights as a GGUF shaped like ``base_gguf`` (see the module docstring).

    Args:
        model_dir: a Hugging Face model folder (safetensors) fine-tuned from ``base_gguf``.
        base_gguf: the GGUF the model was trained from (metadata and tokenizer are copied from it).
        out: the GGUF file to write (written to ``out.tmp`` first, then renamed).
        qtype: ``q8_0`` (8.5 bits per weight) or ``f16`` for the matrices.

    Returns:
        ``out``.

    Raises:
        SimrlError: an unsupported architecture or type, a tensor of the base with no trained
            counterpart or of another shape.
    """
    import gguf

    if qtype not in TYPES:
        raise SimrlError(f"qtype must be one of {', '.join(TYPES)}, got {qtype!r}")
    reader = gguf.GGUFReader(str(base_gguf))
    arch = reader.get_field("general.architecture").contents()
    if arch not in ARCHITECTURES:
        raise SimrlError(f"{base_gguf}: GGUF export supports {', '.join(ARCHITECTURES)} models, not {arch!r}")
    field = {k: int(reader.get_field(f"{arch}.{k}").contents()) for k in
             ("block_count", "attention.head_count", "attention.head_count_kv")}
    trained = _trained(Path(model_dir), arch, field["block_count"])
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    _copy_metadata(reader, writer, qtype)
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape))
        data = trained.get(tensor.name)
        if data is None or tuple(data.shape) != shape:
            raise SimrlError(f"{model_dir}: no trained tensor for {tensor.name} of shape {shape} "
                             f"(found {None if data is None else tuple(data.shape)}); was it trained from {base_gguf}?")
        _add(writer, tensor.name, data, (field["attention.head_count"], field["attention.head_count_kv"]), qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
