"""The only module that imports ``nncf``: post-training INT8 quantization.

Callers hand in a model object of the right framework plus calibration inputs and
a ``QuantizationConfig``; they get the quantized model back and a record of what
NNCF was asked to do (for ``quantization.json``). Sections: OpenVINO models
(``quantize_openvino``), then PyTorch FX / pt2e models (``quantize_torch_fx``).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import nncf
import numpy as np

from mlperf_bnas.quantize.qconfig import QuantizationConfig

log = logging.getLogger(__name__)

NNCF_VERSION = nncf.__version__


def _nncf_arguments(config: QuantizationConfig) -> dict[str, Any]:
    """``QuantizationConfig.to_nncf_kwargs`` with names turned into NNCF's enums."""
    kwargs = config.to_nncf_kwargs()
    kwargs["preset"] = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                        "mixed": nncf.QuantizationPreset.MIXED}[kwargs["preset"]]
    kwargs["target_device"] = nncf.TargetDevice[kwargs["target_device"]]
    if "model_type" in kwargs:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if "ignored_names" in kwargs:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=kwargs.pop("ignored_names"))
    return kwargs


# ---------------------------------------------------------------------------
# OpenVINO models
# ---------------------------------------------------------------------------
def quantize_openvino(model: Any, calibration_inputs: Sequence[np.ndarray],
                      config: QuantizationConfig) -> tuple[Any, dict[str, Any]]:
    """INT8-quantize an ``openvino.Model`` with NNCF on ``calibration_inputs``.

    ``calibration_inputs`` are the model's input tensors, one array per NNCF
    calibration step (leading batch axis). Returns ``(quantized model, record)``.
    """
    if not calibration_inputs:
        raise ValueError("quantize_openvino needs at least one calibration input")
    samples = sum(len(a) for a in calibration_inputs)
    kwargs = _nncf_arguments(config)
    # NNCF counts subset_size in dataset items; one item is one calibration batch here.
    kwargs["subset_size"] = max(1, min(config.subset_size, samples) // max(1, len(calibration_inputs[0])))
    log.info("NNCF %s: quantizing on %d calibration sample(s), preset=%s", NNCF_VERSION, samples, config.preset)
    quantized = nncf.quantize(model, nncf.Dataset(list(calibration_inputs)), **kwargs)
    record = {"tool": "nncf", "nncf_version": NNCF_VERSION, "api": "nncf.quantize (OpenVINO backend)",
              "config": config.to_dict(), "calibration_samples_used": min(samples, config.subset_size)}
    return quantized, record


# ---------------------------------------------------------------------------
# PyTorch FX / pt2e models (RetinaNet engineer's section)
# ---------------------------------------------------------------------------
#: What the torch-fx path always does, whatever the config (the BootstrapNAS RetinaNet seed's NNCF
#: setup): symmetric per-tensor INT8 weights on the full [-127, 127] range (no first-layer
#: "overflow fix" halving), and pre/post-processing left in float.
TORCH_FX_FIXED_SCHEME = {"weights": "int8 symmetric per-tensor, scale = max|w| / 127 (min-max), zero point 0",
                         "overflow_fix": "disable",
                         "activations_dtype": "uint8 per-tensor (X86InductorQuantizer placement)"}


def _x86_quantization_config(symmetric_activations: bool):
    """X86InductorQuantizer's config with the seed's activation mode and a per-tensor weight range.

    Weights are annotated per-tensor (narrow range, so NNCF computes max|w|/127 scales);
    ``_weights_per_tensor_as_per_channel`` then rewrites them into the per-channel form
    Inductor's INT8 convolution lowering matches (one scale repeated per channel).
    """
    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig as AOQuantizationConfig
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    act = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255,
                           qscheme=torch.per_tensor_symmetric if symmetric_activations else torch.per_tensor_affine,
                           is_dynamic=False, observer_or_fake_quant_ctr=HistogramObserver.with_args(eps=2 ** -12))
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_tensor_symmetric,
                              is_dynamic=False, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
    return AOQuantizationConfig(act, act, weight, None, False)


def _weights_per_tensor_as_per_channel(gm) -> int:
    """Fold every weight ``quantize_per_tensor`` into int8 constants with a per-channel dequantize.

    The int8 values are recomputed from the float weight with one symmetric scale
    ``max|w| / 127`` and zero point 0 (NNCF's min-max range for these weights,
    without the first-layer overflow fix ``quantize_pt2e`` cannot switch off), and
    the scale is repeated for every output channel: numerically per-tensor, in the
    per-channel form ``onednn.qconv_pointwise`` lowering requires. Returns the
    number of rewritten weights.
    """
    import torch

    qd = torch.ops.quantized_decomposed
    graph = gm.graph
    count = 0
    for node in list(graph.nodes):
        if not (node.op == "call_function" and node.target == qd.quantize_per_tensor.default
                and node.args[0].op == "get_attr" and node.args[5] == torch.int8):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].target != qd.dequantize_per_tensor.default:
            continue
        weight = gm.get_parameter(node.args[0].target) if node.args[0].target in dict(gm.named_parameters()) \
            else gm.get_buffer(node.args[0].target)
        weight = weight.detach().float()
        scale = max(float(weight.abs().max()) / 127.0, 2 ** -12 / 127.0)
        q_weight = torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8)
        channels = weight.shape[0]
        names = [f"_int8_weight_{count}", f"_int8_weight_scale_{count}", f"_int8_weight_zero_point_{count}"]
        gm.register_buffer(names[0], q_weight)
        gm.register_buffer(names[1], torch.full((channels,), scale, dtype=torch.float32))
        gm.register_buffer(names[2], torch.zeros((channels,), dtype=torch.int64))
        with graph.inserting_before(users[0]):
            attrs = [graph.get_attr(n) for n in names]
            dequant = graph.call_function(qd.dequantize_per_channel.default,
                                          (attrs[0], attrs[1], attrs[2], 0, -127, 127, torch.int8))
        users[0].replace_all_uses_with(dequant)
        graph.erase_node(users[0])
        graph.erase_node(node)
        count += 1
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return count


def quantize_torch_fx(model: Any, example_input: Any, calibration_inputs: Sequence[Any],
                      config: QuantizationConfig, ignored_module_names: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """INT8-quantize a ``torch.nn.Module`` for Inductor: ``torch.export`` -> NNCF ``quantize_pt2e``.

    ``X86InductorQuantizer`` places the quantizers (so ``torch.compile`` lowers them to
    oneDNN INT8 convolutions: real speed, unlike ``nncf.quantize``'s fake-quant
    modules); NNCF computes the ranges on ``calibration_inputs`` (one tensor per
    step). Config mapping: ``preset`` performance -> symmetric activations, mixed
    -> asymmetric; ``subset_size`` -> range-init samples; ``fast_bias_correction``
    true -> NNCF's fast bias correction, false -> none (the seed had none; the
    exact BiasCorrection would re-run the model per layer); ``ignored_names`` and
    ``ignored_module_names`` -> modules left in float. Weights: see
    ``TORCH_FX_FIXED_SCHEME``. Returns ``(quantized GraphModule, record)``.
    """
    import torch
    from nncf.experimental.torch.fx import quantize_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    from mlperf_bnas.errors import UserError

    if not calibration_inputs:
        raise ValueError("quantize_torch_fx needs at least one calibration input")
    if config.model_type is not None:
        raise ValueError(f"quantization.model_type={config.model_type!r} is not supported by the torch-fx path")
    samples = sum(int(x.shape[0]) for x in calibration_inputs)
    per_step = max(1, int(calibration_inputs[0].shape[0]))
    steps = max(1, min(config.subset_size, samples) // per_step)
    with torch.no_grad():
        exported = torch.export.export(model.eval(), (example_input,)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(_x86_quantization_config(symmetric_activations=config.preset == "performance"))
    ignored = list(dict.fromkeys([*ignored_module_names, *config.ignored_names]))
    modules = dict(model.named_modules())
    unknown = [name for name in ignored if name not in modules]
    if unknown:
        raise UserError(f"quantization.ignored_names: no module named {unknown[0]!r} in the model (the torch-fx "
                        f"path takes module names, e.g. {next(iter(list(modules)[1:2]), 'backbone')!r})")
    for name in ignored:
        quantizer.set_module_name_qconfig(name, None)
    log.info("NNCF %s quantize_pt2e: %d calibration step(s) x %d sample(s), preset=%s, ignored modules: %s",
             NNCF_VERSION, steps, per_step, config.preset, ignored or "none")
    quantized = quantize_pt2e(exported, quantizer, nncf.Dataset(list(calibration_inputs)), subset_size=steps,
                              fast_bias_correction=True if config.fast_bias_correction else None,
                              fold_quantize=False)
    rewritten = _weights_per_tensor_as_per_channel(quantized)
    targets = [str(n.target) for n in quantized.graph.nodes if n.op == "call_function"]
    record = {"tool": "nncf", "nncf_version": NNCF_VERSION,
              "api": "nncf.experimental.torch.fx.quantize_pt2e + torchao X86InductorQuantizer",
              "torch_version": torch.__version__, "config": config.to_dict(),
              "activations": "symmetric" if config.preset == "performance" else "asymmetric",
              "bias_correction": "fast" if config.fast_bias_correction else "none",
              **TORCH_FX_FIXED_SCHEME,
              "ignored_modules": ignored,
              "calibration_samples_used": steps * per_step,
              "quantized_weights": rewritten,
              "quantize_ops": sum("quantize_per_tensor" in t and "dequantize" not in t for t in targets),
              "dequantize_ops": sum("dequantize" in t for t in targets)}
    return quantized, record
