"""Behaviour of every NTF loss term on tiny tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from realjudge.models import ntf_losses as L

torch.set_num_threads(1)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_nt_xent_prefers_matching_views():
    torch.manual_seed(0)
    z1 = F.normalize(torch.randn(8, 16), dim=1)
    matched = L.nt_xent(z1, z1.clone())
    shuffled = L.nt_xent(z1, z1[torch.randperm(8)])
    assert matched < shuffled
    assert L.nt_xent(z1[:1], z1[:1]) == 0  # undefined on one image: zero, no crash


def test_prototype_attraction_zero_on_prototype_and_falls_when_closer():
    t = unit([1, 0, 0], [0, 1, 0])
    assert L.prototype_attraction(unit([1, 0, 0], [0, 1, 0]), t, tau=0.01).item() == pytest.approx(0, abs=1e-4)
    far = L.prototype_attraction(unit([1, 1, 3]), t)
    near = L.prototype_attraction(unit([1, 0.2, 0.2]), t)
    assert near < far


def test_prototype_attraction_gradient_pulls_towards_trace():
    t = unit([1, 0])
    z = torch.tensor([[0.6, 0.8]], requires_grad=True)
    L.prototype_attraction(F.normalize(z, dim=1), t).backward()
    assert z.grad[0, 0] < 0  # a descent step increases the component along the trace


def test_variance_loss_penalises_collapse_only():
    torch.manual_seed(0)
    collapsed = torch.ones(16, 8) + 1e-3 * torch.randn(16, 8)
    spread = 3 * torch.randn(64, 8)
    assert L.variance_loss(collapsed) > 0.9
    assert L.variance_loss(spread) == pytest.approx(0.0, abs=1e-6)


def test_usage_loss_uniform_vs_single_prototype():
    t = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    balanced = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    single = unit([1, 0, 0], [1, 0.01, 0], [1, 0, 0.01])
    assert L.prototype_usage_loss(balanced, t, tau=0.01).item() == pytest.approx(0.0, abs=1e-3)
    assert L.prototype_usage_loss(single, t, tau=0.01).item() == pytest.approx(math.log(3), abs=1e-2)


def test_orthogonality_zero_for_independent_heads_high_for_copies():
    torch.manual_seed(0)
    a = torch.randn(512, 4)
    b = torch.randn(512, 4)
    assert L.orthogonality_loss(a, b) < 0.01
    assert L.orthogonality_loss(a, a.clone()) > 0.2


def _batch():
    torch.manual_seed(1)
    protos = unit([1, 0, 0, 0], [0, 1, 0, 0])
    reals = F.normalize(torch.tensor([[1, 0.1, 0, 0], [0.1, 1, 0, 0], [1, 0, 0.1, 0]]), dim=1)
    fakes = F.normalize(torch.tensor([[0.5, 0.5, 0.7, 0], [0, 0.3, 0.2, 1.0]]), dim=1)
    return protos, reals, fakes


def test_soft_contrastive_falls_when_fake_moves_away_from_prototypes():
    protos, reals, fakes = _batch()
    y = torch.tensor([0, 0, 0, 1, 1.0])
    near = fakes.clone()
    near[0] = F.normalize(torch.tensor([1.0, 0.05, 0.05, 0]), dim=0)
    far = fakes.clone()
    far[0] = F.normalize(torch.tensor([-1.0, -1.0, 0, 0]), dim=0)
    l_near = L.soft_contrastive_loss(torch.cat([reals, near]), y, protos)
    l_far = L.soft_contrastive_loss(torch.cat([reals, far]), y, protos)
    assert l_far < l_near


def test_soft_contrastive_never_pulls_fakes_together():
    protos, reals, fakes = _batch()
    y = torch.tensor([0, 0, 0, 1, 1.0])
    z = torch.cat([reals, fakes]).requires_grad_(True)
    loss = L.soft_contrastive_loss(z, y, protos)
    loss.backward()
    # The loss does not depend on fake-fake similarity: moving the two fakes onto each other (keeping
    # their similarity to every real item) changes nothing; and with no reals, no fake term exists at all.
    only_fakes = L.soft_contrastive_loss(fakes.clone().requires_grad_(True), torch.ones(2))
    assert only_fakes.item() == 0.0
    # A fake's gradient points away from the reals and prototypes (descent lowers its similarity to them).
    anchors = torch.cat([reals, protos])
    for j in (3, 4):
        assert (anchors @ -z.grad[j]).mean() < 0


def test_soft_contrastive_fake_fake_invariance():
    protos, reals, _ = _batch()
    y = torch.tensor([0, 0, 0, 1, 1.0])
    # Two fakes orthogonal to every real item and prototype: whether they coincide or oppose, the loss is equal.
    f_same = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 1.0]])
    f_opp = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, -1.0]])
    reals_ = F.normalize(reals[:, :3].clone(), dim=1)
    reals4 = torch.cat([reals_, torch.zeros(3, 1)], 1)
    a = L.soft_contrastive_loss(torch.cat([reals4, f_same]), y, protos)
    b = L.soft_contrastive_loss(torch.cat([reals4, f_opp]), y, protos)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_soft_contrastive_pulls_reals_to_prototypes():
    protos, reals, fakes = _batch()
    y = torch.tensor([0, 0, 0, 1, 1.0])
    z = torch.cat([reals, fakes]).requires_grad_(True)
    L.soft_contrastive_loss(z, y, protos).backward()
    assert (protos @ -z.grad[0]).max() > 0  # descent moves a real towards a trace


def test_soft_weights_change_the_loss_and_hard_mode_exists():
    protos, reals, fakes = _batch()
    y = torch.tensor([0, 0, 0, 1, 1.0])
    z = torch.cat([reals, fakes])
    assert L.soft_contrastive_loss(z, y, protos, soft=True) != L.soft_contrastive_loss(z, y, protos, soft=False)
    assert torch.isfinite(L.soft_contrastive_loss(z, y, None))


def test_supcon_pulls_fakes_together_unlike_soft_loss():
    _, reals, _ = _batch()
    y = torch.tensor([0, 0, 0, 1, 1.0])
    f_same = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 1.0]])
    f_opp = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, -1.0]])
    reals4 = torch.cat([F.normalize(reals[:, :3], dim=1), torch.zeros(3, 1)], 1)
    together = L.supcon_loss(torch.cat([reals4, f_same]), y)
    apart = L.supcon_loss(torch.cat([reals4, f_opp]), y)
    assert together < apart


def test_trace_similarity_and_bce():
    t = unit([1, 0], [0, 1])
    s = L.trace_similarity(unit([1, 0], [-1, -1]), t)
    assert s[0].item() == pytest.approx(1.0) and s[1].item() == pytest.approx(-math.sqrt(0.5))
    logits = torch.tensor([5.0, -5.0])
    assert L.bce_loss(logits, torch.tensor([1, 0])) < L.bce_loss(logits, torch.tensor([0, 1]))
