"""PointNet's own networks: shapes, T-Nets that start at the identity, the orthogonality regulariser,
permutation invariance (classifier) and equivariance (part segmenter), batch independence, gradients,
learning, and what the network learned: the critical point set and the upper-bound shape."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from perception.models import PointNetClassifier, PointNetFeatures, PointNetPartSegmenter, TNet
from perception.models.pointnet import critical_point_indices, orthogonality_loss, upper_bound_mask

TINY = dict(
    local_channels=(16, 16),
    global_channels=(16, 32, 64),
    tnet_channels=(16, 32, 64),
    tnet_fc_channels=(32, 16),
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def classifier(num_classes: int = 5, seed: int = 0, **kw) -> PointNetClassifier:
    torch.manual_seed(seed)
    return PointNetClassifier(num_classes, head_channels=(32, 16), **{**TINY, **kw})


def segmenter(seed: int = 0, **kw) -> PointNetPartSegmenter:
    torch.manual_seed(seed)
    return PointNetPartSegmenter(6, 3, head_channels=(32, 16, 16), **{**TINY, **kw})


def as_if_trained(model: nn.Module, seed: int = 1) -> nn.Module:
    """Eval mode with BatchNorm statistics and T-Net outputs that are not the identity, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                c = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                module.running_var.copy_(0.5 + torch.rand(c, generator=g))
                module.weight.copy_(0.5 + torch.rand(c, generator=g))
                module.bias.copy_(0.2 * torch.randn(c, generator=g))
            if isinstance(module, TNet):
                module.transform.weight.copy_(0.05 * torch.randn(module.transform.weight.shape, generator=g))
    return model.eval()


def shapes(b: int, n: int, seed: int, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, c, generator=g) / 1.7


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


# ------------------------------------------------------------------------------------------- shapes


def test_output_shapes_at_the_paper_widths():
    torch.manual_seed(0)
    model = PointNetClassifier(40).eval()
    points = shapes(2, 32, 0)
    with torch.no_grad():
        logits, aux = model.forward_with_aux(points)
    assert logits.shape == (2, 40)
    assert aux.local_features.shape == (2, 32, 64)
    assert aux.point_features.shape == (2, 32, 1024)
    assert aux.global_feature.shape == (2, 1024)
    assert aux.critical_indices.shape == (2, 1024) and aux.critical_indices.dtype == torch.int64
    assert aux.input_transform.shape == (2, 3, 3) and aux.feature_transform.shape == (2, 64, 64)
    assert (aux.global_feature >= 0).all()  # BN + ReLU on the last shared layer too

    seg = PointNetPartSegmenter(50, 16).eval()
    with torch.no_grad():
        out = seg(points, torch.tensor([3, 15]))
    assert out.shape == (2, 32, 50)


def test_options_without_transforms_and_with_extra_channels():
    model = classifier(in_channels=4, input_transform=False, feature_transform=False).eval()
    with torch.no_grad():
        logits, aux = model.forward_with_aux(shapes(3, 20, 0, c=4))
    assert logits.shape == (3, 5) and aux.input_transform is None and aux.feature_transform is None
    with pytest.raises(ValueError, match="in_channels"):
        PointNetClassifier(3, in_channels=2)
    with pytest.raises(ValueError, match="normals"):
        PointNetClassifier(3, in_channels=4, normals=True)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        model = classifier()
        model(torch.zeros(10, 3))
    with pytest.raises(ValueError, match="category"):
        segmenter()(shapes(2, 8, 0), torch.tensor([0]))


def test_tnets_start_at_the_identity_exactly():
    torch.manual_seed(0)
    eye3, eye64 = torch.eye(3).expand(4, 3, 3), torch.eye(64).expand(4, 64, 64)
    for mode in ("train", "eval"):
        tnet = TNet(3, 6).train(mode == "train")
        assert torch.equal(tnet(torch.randn(4, 50, 6) * 10), eye3)
        tnet = TNet(64, 64, channels=(16, 32, 64), fc_channels=(32, 16)).train(mode == "train")
        assert torch.equal(tnet(torch.randn(4, 50, 64)), eye64)
    model = classifier()
    _, aux = model.forward_with_aux(shapes(4, 30, 0))
    assert torch.equal(aux.input_transform, eye3)
    assert torch.equal(aux.feature_transform, torch.eye(16).expand(4, 16, 16))


def test_normals_turn_with_xyz_and_other_channels_pass_through():
    """With the input T-Net fixed to a rotation R, the network sees x, y, z and the normals times R
    and the last channel as it is: the same as a network without an input T-Net fed those values."""
    angle = torch.tensor(0.7)
    c, s = torch.cos(angle), torch.sin(angle)
    rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    with_tnet = as_if_trained(classifier(in_channels=7, normals=True))
    with torch.no_grad():
        with_tnet.features.input_tnet.transform.weight.zero_()
        with_tnet.features.input_tnet.transform.bias.copy_((rotation - torch.eye(3)).flatten())
    plain = classifier(in_channels=7, normals=True, input_transform=False).eval()
    plain.load_state_dict(
        {k: v for k, v in with_tnet.state_dict().items() if "input_tnet" not in k}, strict=True
    )
    points = shapes(2, 40, 3, c=7)
    turned = torch.cat([points[..., :3] @ rotation, points[..., 3:6] @ rotation, points[..., 6:]], dim=2)
    with torch.no_grad():
        a, b = with_tnet.forward_with_aux(points)[1], plain.forward_with_aux(turned)[1]
    assert relative(a.input_transform, rotation.expand(2, 3, 3)) <= 1e-6
    assert relative(a.local_features, b.local_features) <= 1e-5
    assert relative(a.global_feature, b.global_feature) <= 1e-5


# ------------------------------------------------------------------------------------- regulariser


def test_orthogonality_loss():
    q, _ = torch.linalg.qr(torch.randn(5, 8, 8, dtype=torch.float64))
    assert float(orthogonality_loss(q)) < 1e-20
    permutation = torch.eye(4)[[2, 0, 3, 1]].unsqueeze(0)
    assert float(orthogonality_loss(permutation)) == 0.0
    # A = 2I (2×2): I − AAᵀ = −3I, ‖·‖²_F = 9 + 9 = 18; the batch [I, 2I] averages to 9
    assert float(orthogonality_loss(2 * torch.eye(2).unsqueeze(0))) == 18.0
    assert float(orthogonality_loss(torch.stack([torch.eye(2), 2 * torch.eye(2)]))) == 9.0
    # A = [[1, 1], [0, 1]]: AAᵀ = [[2, 1], [1, 1]], I − AAᵀ = [[−1, −1], [−1, 0]] → 3
    assert float(orthogonality_loss(torch.tensor([[[1.0, 1.0], [0.0, 1.0]]]))) == 3.0
    with pytest.raises(ValueError):
        orthogonality_loss(torch.zeros(2, 3, 4))


# ------------------------------------------------------------------------------ symmetry and batches

CLASSIFIER = as_if_trained(classifier())
SEGMENTER = as_if_trained(segmenter())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 80), b=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_classifier_logits_are_permutation_invariant(n, b, seed):
    points = shapes(b, n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = CLASSIFIER(points)
        assert relative(logits, CLASSIFIER(points[:, perm])) <= 1e-5


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 80), b=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_part_segmenter_is_permutation_equivariant(n, b, seed):
    points = shapes(b, n, seed)
    category = torch.randint(0, 3, (b,), generator=torch.Generator().manual_seed(seed))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        out = SEGMENTER(points, category)
        assert out.shape == (b, n, 6)
        assert relative(out[:, perm], SEGMENTER(points[:, perm], category)) <= 1e-5


def test_one_set_never_depends_on_another_in_eval_mode():
    points = shapes(4, 50, 0)
    category = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        logits, parts = CLASSIFIER(points), SEGMENTER(points, category)
        for i in range(4):
            assert relative(logits[i : i + 1], CLASSIFIER(points[i : i + 1])) <= 1e-6
            assert relative(parts[i : i + 1], SEGMENTER(points[i : i + 1], category[i : i + 1])) <= 1e-6
    # the category conditions the part logits
    with torch.no_grad():
        assert not torch.allclose(
            SEGMENTER(points[:1], torch.tensor([0])), SEGMENTER(points[:1], torch.tensor([1]))
        )


# ------------------------------------------------------------------------------ gradients, learning


@pytest.mark.parametrize("build", [classifier, segmenter], ids=["classifier", "segmenter"])
def test_gradients_reach_every_parameter(build):
    model = build().train()
    points = shapes(4, 24, 0)

    def backward() -> dict[str, torch.Tensor | None]:
        model.zero_grad(set_to_none=True)
        if isinstance(model, PointNetClassifier):
            logits, aux = model.forward_with_aux(points)
        else:
            logits, aux = model.forward_with_aux(points, torch.tensor([0, 1, 2, 0]))
        (logits.square().mean() + orthogonality_loss(aux.feature_transform)).backward()
        return {name: p.grad for name, p in model.named_parameters()}

    grads = backward()
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # at the start the T-Nets' last layers are zero, so only they (not the layers before) learn first
    assert all(g.abs().sum() > 0 for name, g in grads.items() if "tnet" not in name or "transform." in name)
    with torch.no_grad():
        for tnet in (model.features.input_tnet, model.features.feature_tnet):
            tnet.transform.weight.normal_(0, 0.01)
    grads = backward()
    assert all(g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if g.abs().sum() == 0]


def test_a_tiny_classifier_overfits_eight_shapes():
    model = classifier(num_classes=4, dropout=0.0)
    points = shapes(8, 64, 7)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        logits, aux = model.forward_with_aux(points)
        loss = nn.functional.cross_entropy(logits, labels) + 1e-3 * orthogonality_loss(aux.feature_transform)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0]
    with torch.no_grad():  # BatchNorm's running statistics of the final weights (they moved while learning)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.reset_running_stats()
                module.momentum = None  # a cumulative average: one pass gives the batch's statistics
        model(points)
        model.eval()
        assert torch.equal(model(points).argmax(1), labels)


# ---------------------------------------------------------------------------- what PointNet learned


def test_critical_points_alone_give_the_same_global_feature_and_logits():
    points = shapes(2, 300, 5)
    with torch.no_grad():
        _, aux = CLASSIFIER.forward_with_aux(points)
        critical = critical_point_indices(aux)
        assert [c.tolist() for c in critical] == [
            c.tolist() for c in critical_point_indices(CLASSIFIER, points)
        ]
        for i, idx in enumerate(critical):
            assert 1 <= len(idx) <= 64 and torch.equal(idx, idx.unique(sorted=True))  # ≤ the global width
            # (a set alone, not in a batch of two: the T-Nets' FC layers round a batch of one differently)
            shape = points[i : i + 1]
            logits, own = CLASSIFIER.forward_with_aux(shape)
            assert torch.equal(critical_point_indices(own)[0], idx)
            alone = CLASSIFIER.features(shape[:, idx], transforms_from=own)  # the shape's T-Nets, fixed
            assert torch.equal(alone.global_feature, own.global_feature)
            assert torch.equal(CLASSIFIER.classify(alone.global_feature), logits)
            # with the points the T-Nets depend on, the unmodified network gives the same logits
            closed = critical_point_indices(CLASSIFIER, shape, with_transforms=True)[0]
            assert set(idx.tolist()) < set(closed.tolist())
            assert torch.equal(CLASSIFIER(shape[:, closed]), logits)
    with pytest.raises(ValueError, match="transform_indices"):
        critical_point_indices(aux, with_transforms=True)
    with pytest.raises(ValueError, match="eval mode"):
        critical_point_indices(classifier().train(), points)


def test_upper_bound_points_leave_the_global_feature_unchanged():
    model = CLASSIFIER.features
    points = shapes(1, 200, 9)[0]
    g = torch.linspace(-1.2, 1.2, 12)
    candidates = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), dim=-1).reshape(-1, 3)
    inside = upper_bound_mask(CLASSIFIER, points, candidates, chunk=500)
    assert inside.shape == (len(candidates),) and 0 < int(inside.sum()) < len(candidates)
    with torch.no_grad():
        reference = model(points[None])
        grown = model(torch.cat([points, candidates[inside]])[None], transforms_from=reference)
        assert torch.equal(grown.global_feature, reference.global_feature)
        for j in torch.nonzero(~inside)[:5, 0]:  # any point outside raises some channel
            more = model(torch.cat([points, candidates[j : j + 1]])[None], transforms_from=reference)
            assert (more.global_feature >= reference.global_feature).all()
            assert not torch.equal(more.global_feature, reference.global_feature)
        for j in torch.nonzero(inside)[:5, 0]:
            more = model(torch.cat([points, candidates[j : j + 1]])[None], transforms_from=reference)
            assert torch.equal(more.global_feature, reference.global_feature)
    # the shape's own points are inside its upper bound
    assert isinstance(model, PointNetFeatures) and upper_bound_mask(model, points, points).all()
    with pytest.raises(ValueError, match="one shape"):
        upper_bound_mask(CLASSIFIER, shapes(2, 10, 0), candidates)
