"""The seed papers' networks: shared interface, DDRNet ablation switches, token grids, learning."""
import pytest
import torch
from torch import nn

from leukodx.errors import LeukodxError
from leukodx.models import create_model
from leukodx.models.ddrnet import CSAB, DRDB, GLFEB, VARIANTS, group_norm
from leukodx.models.registry import sized_kwargs

SEED_MODELS = [("ddrnet", {"variant": v}) for v in VARIANTS] + [
    ("thesis_cnn", {}), ("classic_cnn", {}), ("thesis_vit", {}), ("hybrid_cnn_vit", {})]


@pytest.mark.parametrize("name,kw", SEED_MODELS, ids=[f"{n}-{k.get('variant', '')}" for n, k in SEED_MODELS])
def test_seed_models_share_interface_and_backprop(name, kw):
    torch.manual_seed(0)
    m = create_model(name, 5, img_size=64, **kw)
    x = torch.randn(2, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m.forward_head(m.forward_features(x)), m(x), atol=1e-5)
        assert m.forward_head(m.forward_features(x), pre_logits=True).ndim == 2
    m.train()
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    assert m.get_classifier().out_features == 5
    with pytest.raises(LeukodxError, match="no pretrained weights"):
        create_model(name, 5, pretrained=True, **kw)


def test_ddrnet_variants_contain_exactly_their_blocks():
    def has(m, kind):
        return any(isinstance(x, kind) for x in m.modules())

    for v, (drdb, glfeb, csab) in VARIANTS.items():
        m = create_model("ddrnet", 4, variant=v, img_size=64)
        assert (has(m, DRDB), has(m, GLFEB), has(m, CSAB)) == (drdb, glfeb, csab), v
        assert not has(m, nn.BatchNorm2d) and has(m, nn.GroupNorm)
    m = create_model("ddrnet", 4, num_drdb=3, img_size=64)
    assert sum(isinstance(x, DRDB) for x in m.modules()) == 3
    drdb = next(x for x in m.modules() if isinstance(x, DRDB))
    assert [p.body[0].dilation[0] for p in drdb.paths] == [1, 1, 1, 1, 2, 4]
    assert m.drop.p == 0.2
    with pytest.raises(LeukodxError, match="variant"):
        create_model("ddrnet", 4, variant="drdb+glfeb")


def test_group_norm_has_at_most_32_groups_of_at_least_8_channels():
    assert group_norm(32).num_groups == 4  # not instance norm at the stem
    assert group_norm(64).num_groups == 8
    assert group_norm(512).num_groups == 32
    assert group_norm(48).num_groups == 6
    assert group_norm(20).num_groups == 2


def test_token_grids():
    vit = create_model("thesis_vit", 2, img_size=224)
    assert vit.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 1 + 14 * 14, 256)
    assert len(vit.tokens.encoder.layers) == 4 and not vit.tokens.encoder.layers[0].norm_first
    for size in (96, 224):  # 12x12 and 28x28 maps -> always a 3x3 grid = 9 tokens + CLS
        hyb = create_model("hybrid_cnn_vit", 2, img_size=size)
        assert hyb.vit_branch.pos_embed.shape[1] == 10 and len(hyb.vit_branch.encoder.layers) == 6
        hyb(torch.randn(1, 3, size, size))
    with pytest.raises(LeukodxError, match="multiple of patch_size"):
        create_model("thesis_vit", 2, img_size=100)


def test_sized_kwargs_only_for_families_that_need_it():
    assert sized_kwargs("thesis_vit", 96, {}) == {"img_size": 96}
    assert sized_kwargs("thesis_vit", 96, {"img_size": 64}) == {"img_size": 64}
    assert sized_kwargs("efficientnet_lite0", 96, {}) == {}
    assert sized_kwargs("resnet34", 96, {"drop_rate": 0.1}) == {"drop_rate": 0.1}


def test_ddrnet_learns_a_simple_task():
    """Bright-centre vs dark-centre images: a few Adam steps must separate them."""
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32) * 0.2
    y = torch.arange(32) % 2
    x[y == 1, :, 8:24, 8:24] += 0.8
    m = create_model("ddrnet", 2, img_size=32, num_drdb=1)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        assert (m(x).argmax(1) == y).float().mean() == 1.0
