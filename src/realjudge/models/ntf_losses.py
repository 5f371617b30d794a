"""Loss terms of NTF (natural-trace forensics) and its ablations, one function per term.

Notation: `z` are L2-normalised embeddings (N x d), `t_k` the K learnable natural-trace prototypes
(normalised, K x d), `cos(a, b) = a . b` for unit vectors, `tau` a temperature. Labels: 0 real, 1 fake.
Every function returns a scalar tensor; batches where a term is undefined (no pair to compare) give 0
with a gradient path, so that a training step never crashes on an unlucky batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zero(ref: torch.Tensor) -> torch.Tensor:
    return ref.sum() * 0.0


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """Heterogeneous (instance) term, NT-Xent / InfoNCE between two views of each image.

    With the 2N views `u = [z1; z2]` and `p(i)` the other view of view i:
        L = -1/(2N) sum_i log( exp(u_i.u_p(i) / tau) / sum_{a != i} exp(u_i.u_a / tau) )
    Low when each view is closer to its own twin than to any other image's view: view-invariant and
    instance-specific.
    """
    n = z1.shape[0]
    if n < 2:
        return _zero(z1)
    u = torch.cat([z1, z2], 0)
    sim = u @ u.t() / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(sim, target)


def prototype_assignment(z: torch.Tensor, prototypes: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Soft assignment of each embedding to the prototypes: a_ik = softmax_k(cos(z_i, t_k) / tau)."""
    return torch.softmax(z @ prototypes.t() / tau, dim=1)


def trace_similarity(z: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Proximity to the natural traces: s_trace(z) = max_k cos(z, t_k), in [-1, 1]."""
    return (z @ prototypes.t()).max(dim=1).values


def prototype_attraction(z: torch.Tensor, prototypes: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Homogeneous term: pull each real embedding towards the traces, by soft assignment.

        L = 1/N sum_i sum_k a_ik (1 - cos(z_i, t_k)),   a_ik = softmax_k(cos(z_i, t_k) / tau)
    The assignment is not detached, so as tau -> 0 this is the distance to the nearest prototype.
    Zero when every embedding sits on a prototype.
    """
    if z.shape[0] == 0:
        return _zero(z) + _zero(prototypes)
    a = prototype_assignment(z, prototypes, tau)
    return (a * (1.0 - z @ prototypes.t())).sum(1).mean()


def variance_loss(u: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Anti-collapse (VICReg variance) on un-normalised embeddings u (N x d):

        L = 1/d sum_j max(0, gamma - sqrt(Var_i(u_ij) + eps))
    Positive when the batch collapses onto a point along some dimension; zero once every dimension
    has a standard deviation of at least gamma.
    """
    if u.shape[0] < 2:
        return _zero(u)
    std = torch.sqrt(u.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def prototype_usage_loss(z: torch.Tensor, prototypes: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Anti-collapse of the prototypes: the batch should use all of them.

    With the mean assignment q_k = 1/N sum_i a_ik:
        L = log K - H(q) = sum_k q_k log(K q_k)   (the KL divergence from q to uniform)
    Zero when the prototypes are used equally; log K when one prototype takes every image.
    """
    k = prototypes.shape[0]
    if z.shape[0] == 0 or k < 2:
        return _zero(z) + _zero(prototypes)
    q = prototype_assignment(z, prototypes, tau).mean(0)
    return (q * torch.log(q.clamp_min(1e-12) * k)).sum()


def orthogonality_loss(z_hom: torch.Tensor, z_het: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Decorrelation of the two heads: the cross-correlation between z_hom and z_het goes to zero.

    With both standardised over the batch (zero mean, unit variance per dimension),
        C = z_hom_std^T z_het_std / N   (d_hom x d_het),   L = mean_jk C_jk^2
    Zero when no dimension of one head is linearly predictable from a dimension of the other.
    """
    n = z_hom.shape[0]
    if n < 2:
        return _zero(z_hom) + _zero(z_het)
    a = (z_hom - z_hom.mean(0)) / (z_hom.std(0) + eps)
    b = (z_het - z_het.mean(0)) / (z_het.std(0) + eps)
    c = a.t() @ b / n
    return (c ** 2).mean()


def soft_contrastive_loss(z: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor | None = None,
                          tau: float = 0.1, soft: bool = True) -> torch.Tensor:
    """Stage-2 soft contrastive loss: reals and prototypes attract each other, fakes are only pushed away.

    Items are the batch plus the prototypes (which join as real anchors). Anchors are the real
    items; for anchor i the positives P(i) are the other real items (batch reals and prototypes); the
    denominator runs over every other item, fakes included:
        L = -1/|A| sum_{i in A} sum_{j in P(i)} w_ij log( exp(z_i.z_j/tau) / sum_{a != i} exp(z_i.z_a/tau) )
    Soft weights: w_ij proportional to c_j = (1 + s_trace(z_j)) / 2 (detached; 1 for a prototype),
    normalised over P(i), so reals far from every trace (odd photographs) pull less; `soft=False`
    weights all positives equally. Fakes are never anchors and never positives: no fake-fake term
    exists, so fakes of unseen generators are not asked to cluster, only to leave the real region.
    """
    real = labels.reshape(-1) < 0.5
    items = z
    is_real = real
    weight = torch.ones(z.shape[0], device=z.device, dtype=z.dtype)
    if prototypes is not None and prototypes.shape[0]:
        items = torch.cat([z, prototypes], 0)
        is_real = torch.cat([real, torch.ones(prototypes.shape[0], dtype=torch.bool, device=z.device)])
        if soft:
            weight = torch.cat([(1 + trace_similarity(z, prototypes).detach()) / 2,
                                torch.ones(prototypes.shape[0], device=z.device, dtype=z.dtype)])
        else:
            weight = torch.ones(items.shape[0], device=z.device, dtype=z.dtype)
    m = items.shape[0]
    anchors = torch.nonzero(is_real).flatten()
    if len(anchors) < 2:
        return _zero(z) if prototypes is None else _zero(z) + _zero(prototypes)
    sim = items[anchors] @ items.t() / tau  # |A| x m
    self_mask = torch.zeros(len(anchors), m, dtype=torch.bool, device=z.device)
    self_mask[torch.arange(len(anchors)), anchors] = True
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    pos = is_real.unsqueeze(0).expand(len(anchors), m) & ~self_mask
    w = weight.unsqueeze(0) * pos.to(z.dtype)
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    return -(w * log_prob.masked_fill(~pos, 0.0)).sum(1).mean()


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Plain supervised contrastive loss (Khosla et al. 2020), the ablation of the soft loss.

        L = -1/|A| sum_i 1/|P(i)| sum_{j in P(i)} log( exp(z_i.z_j/tau) / sum_{a != i} exp(z_i.z_a/tau) )
    with P(i) every other item of i's class, for both classes: unlike the soft loss, fakes are
    pulled together.
    """
    y = labels.reshape(-1)
    n = z.shape[0]
    if n < 2:
        return _zero(z)
    sim = z @ z.t() / tau
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    pos = (y.unsqueeze(0) == y.unsqueeze(1)) & ~eye
    has = pos.any(1)
    if not has.any():
        return _zero(z)
    per = (log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / pos.sum(1)[has]
    return -per.mean()


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Classifier head: L = -1/N sum_i [y_i log sigmoid(l_i) + (1 - y_i) log(1 - sigmoid(l_i))]."""
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
