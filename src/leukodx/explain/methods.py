"""Explanation methods as small functions `(model, x, target, **opts) -> map (H, W) in [0, 1]`.
The work is done by pytorch-grad-cam (CAM family) and Captum (gradients, SHAP, LIME); this file is
the glue. `x` is one normalised input (1, 3, H, W); `model` returns logits."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from leukodx.explain.targets import ExplainError, resolve_target

CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam")
# documented sample counts (issue 6: SHAP and LIME <= 20 s per image on 2 cores)
SHAP_SAMPLES, LIME_SAMPLES, SUPERPIXELS, IG_STEPS = 200, 200, 40, 32


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float32))
    a = a - a.min()
    return a / a.max() if a.max() > 0 else a


def cam(model: nn.Module, x: torch.Tensor, target: int, method: str = "gradcam", layer: str | None = None) -> np.ndarray:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "scorecam": pgc.ScoreCAM,
           "eigencam": pgc.EigenCAM, "layercam": pgc.LayerCAM}[method]
    run, target_layer, reshape = resolve_target(model, layer, x.shape[-1])
    with cls(model=run, target_layers=[target_layer], reshape_transform=reshape) as c:
        c.batch_size = 32  # ScoreCAM: masked images per forward pass
        out = c(input_tensor=x.detach().clone().requires_grad_(True), targets=[ClassifierOutputTarget(target)])
    return _unit(out[0])


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int, steps: int = IG_STEPS) -> np.ndarray:
    from captum.attr import IntegratedGradients

    a = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                                             internal_batch_size=steps)
    return _unit(a[0].abs().sum(0).detach().numpy())


def superpixels(image_uint8: np.ndarray, n: int = SUPERPIXELS) -> np.ndarray:
    """SLIC superpixels (H, W) int labels from 0, the features SHAP and LIME switch on and off.
    Falls back to a regular grid when SLIC finds almost no structure (flat or noise images)."""
    from skimage.segmentation import slic

    seg = slic(image_uint8, n_segments=n, compactness=10, start_label=0)
    if seg.max() + 1 < max(4, n // 4):
        h, w = image_uint8.shape[:2]
        side = int(np.ceil(np.sqrt(n)))
        seg = (np.arange(h)[:, None] * side // h) * side + np.arange(w)[None, :] * side // w
    return np.unique(seg, return_inverse=True)[1].reshape(seg.shape)


def _perturbation(model, x, target, image_uint8, algo: str, samples: int) -> np.ndarray:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    seg = torch.from_numpy(superpixels(image_uint8)).long()[None, None].expand(1, 3, *x.shape[-2:])
    baseline = x.mean((2, 3), keepdim=True).expand_as(x)  # mean colour: a superpixel "off"
    # LIME: ridge surrogate as in Ribeiro et al. (captum's default lasso zeroes small effects)
    explainer = KernelShap(model) if algo == "shap" else Lime(model, interpretable_model=SkLearnRidge(alpha=1.0))
    with torch.no_grad():
        a = explainer.attribute(x, baselines=baseline, target=target, feature_mask=seg, n_samples=samples,
                                perturbations_per_eval=50)
    return _unit(a[0, 0].clamp(min=0).numpy())


def kernel_shap(model, x, target, image_uint8, samples: int = SHAP_SAMPLES) -> np.ndarray:
    """KernelSHAP over SLIC superpixels (positive contributions to the target class)."""
    return _perturbation(model, x, target, image_uint8, "shap", samples)


def lime(model, x, target, image_uint8, samples: int = LIME_SAMPLES) -> np.ndarray:
    """LIME over SLIC superpixels (positive weights of the local linear model)."""
    return _perturbation(model, x, target, image_uint8, "lime", samples)


def attention_rollout(model: nn.Module, x: torch.Tensor, target: int | None = None) -> np.ndarray:
    """Abnar & Zuidema rollout: product of (head-averaged attention + identity) over layers, the CLS
    row over patch tokens. Works for torch MultiheadAttention (our ViTs) and timm ViT blocks."""
    attns, hooks = [], []
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            hooks.append(m.register_forward_pre_hook(_want_weights, with_kwargs=True))
            hooks.append(m.register_forward_hook(lambda _m, _i, o: attns.append(o[1].detach())))
        elif hasattr(m, "fused_attn") and hasattr(m, "attn_drop"):
            m.fused_attn = False
            hooks.append(m.attn_drop.register_forward_hook(lambda _m, _i, o: attns.append(o.detach().mean(1))))
    if not hooks:
        raise ExplainError("attention rollout needs a transformer (ViT) model; this one has no attention layers")
    try:
        with torch.enable_grad():  # keeps torch's fused fast path (which skips hooks) off
            model.eval()(x.requires_grad_(True))
    finally:
        for h in hooks:
            h.remove()
    n = attns[0].shape[-1]
    roll = torch.eye(n)
    for a in attns:
        a = a[0] if a.ndim == 3 else a
        a = (a + torch.eye(n)) / 2
        roll = (a / a.sum(-1, keepdim=True)) @ roll
    cls = roll[0, 1:]
    g = int(len(cls) ** 0.5)
    if g * g != len(cls):
        raise ExplainError(f"attention rollout: {len(cls)} patch tokens do not form a square grid")
    grid = torch.nn.functional.interpolate(cls.reshape(1, 1, g, g), size=x.shape[-2:], mode="bilinear")
    return _unit(grid[0, 0].numpy())


def _want_weights(_m, args, kwargs):
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = True
    return args, kwargs
