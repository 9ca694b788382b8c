"""The findings loss against its formula in float64, written out per label: unknown labels add
nothing (value and gradient), pos_weight is negatives / positives among the known labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrfast.errors import DataError
from cxrfast.losses import findings_bce, positive_weights


def _formula(logits, targets, known, pos_weight):
    """-[w·y·log σ(x) + (1 − y)·log(1 − σ(x))], averaged over the known labels."""
    total, count = 0.0, 0
    for (i, j), x in np.ndenumerate(logits):
        if not known[i, j]:
            continue
        p, y = 1 / (1 + math.exp(-x)), targets[i, j]
        total -= pos_weight[j] * y * math.log(p) + (1 - y) * math.log(1 - p)
        count += 1
    return total / count


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(6, 4, generator=g) * 3).requires_grad_()
    targets = (torch.rand(6, 4, generator=g) < 0.4).float()
    known = torch.rand(6, 4, generator=g) < 0.7
    return logits, targets, known


def test_equals_the_formula_and_ignores_unknown_labels():
    logits, targets, known = _case()
    weights = torch.tensor([1.0, 2.5, 0.5, 4.0])
    loss = findings_bce(logits, targets, known, weights)
    expected = _formula(logits.detach().double().numpy(), targets.numpy(), known.numpy(), weights.numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    grad, = torch.autograd.grad(loss, logits)
    assert torch.all(grad[~known] == 0) and torch.all(grad[known] != 0)
    # A different target where the label is unknown changes nothing.
    flipped = torch.where(known, targets, 1 - targets)
    assert findings_bce(logits, flipped, known, weights).item() == loss.item()


def test_without_weights_is_torchs_mean_over_the_known_labels():
    logits, targets, known = _case(1)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    torch.testing.assert_close(findings_bce(logits, targets, known), expected)


def test_nothing_known_is_zero():
    logits, targets, _ = _case(2)
    loss = findings_bce(logits, targets, torch.zeros_like(targets, dtype=torch.bool))
    assert loss.item() == 0.0
    assert torch.all(torch.autograd.grad(loss, logits)[0] == 0)


def test_positive_weights_count_known_labels_only():
    targets = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    known = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)
    # finding 0: known rows 0,1,2,4 -> 1 positive, 3 negatives; finding 1: rows 0-3 -> 2, 2;
    # finding 2: rows 0,2,3,4 -> 1 positive, 3 negatives.
    torch.testing.assert_close(positive_weights(targets, known, ["a", "b", "c"]), torch.tensor([3.0, 1.0, 3.0]))


def test_a_finding_without_a_known_positive_is_an_error():
    targets = torch.tensor([[1, 0], [0, 1]], dtype=torch.float32)
    known = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    with pytest.raises(DataError, match="no known positive of 'Edema' among the training labels"):
        positive_weights(targets, known, ["Cardiomegaly", "Edema"])


def test_shapes_must_agree():
    logits, targets, known = _case()
    with pytest.raises(ValueError, match=r"must all be \(batch, findings\)"):
        findings_bce(logits, targets[:, :3], known)
