"""PGSeg's parts (prolab.wovss), each on a case small enough to check by hand: the straight-through assignment,
stage composition, EM prototypes, Hungarian matching (the paper's maximum vs the released minimum), the
rejection (diagonal vs column 0), L_PG, EMA, captions and the label-aware contrastive loss, the zero-shot naming."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prolab.wovss import (EMAPrototypes, caption, compose_assignments, em_prototypes, hard_softmax, image_labels,
                          match_prototypes, multi_positive_infonce, name_groups, oracle_labels, pg_loss,
                          pixel_labels, positives_from_labels, token_assignment)


def test_straight_through_is_one_hot_forward_and_softmax_backward():
    logits = torch.tensor([[0.2, 1.5, -0.3]], requires_grad=True)
    y = hard_softmax(logits)
    assert y.tolist() == [[0.0, 1.0, 0.0]]
    w = torch.tensor([[1.0, 2.0, 3.0]])
    (y * w).sum().backward()
    ref = torch.tensor([[0.2, 1.5, -0.3]], requires_grad=True)
    (ref.softmax(-1) * w).sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)


def test_assignments_put_each_token_in_groups_summing_to_one_and_compose():
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(0))
    hard = token_assignment(logits, training=True, generator=torch.Generator().manual_seed(1))
    again = token_assignment(logits, training=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hard, again)                                   # seeded Gumbel noise: reproducible
    assert torch.allclose(hard.sum(1), torch.ones(2, 9)) and set(hard.unique().tolist()) <= {0.0, 1.0}
    soft = token_assignment(logits, training=False)
    torch.testing.assert_close(soft, logits.softmax(-2))
    stage2 = token_assignment(torch.randn(2, 3, 4), training=False)
    both = compose_assignments(soft, stage2)
    assert both.shape == (2, 3, 9) and torch.allclose(both.sum(1), torch.ones(2, 9))
    with pytest.raises(ValueError, match="do not compose"):
        compose_assignments(soft, torch.rand(2, 3, 5))


def _two_clusters(n=20, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.zeros(d), torch.zeros(d)
    a[0], b[1] = 1.0, 1.0
    x = torch.cat([a + 0.05 * torch.randn(n, d, generator=g), b + 0.05 * torch.randn(n, d, generator=g)])
    return x[None], a, b


def test_em_is_deterministic_and_finds_the_clusters():
    x, a, b = _two_clusters()
    mu1, r1 = em_prototypes(x, 2, generator=torch.Generator().manual_seed(3))
    mu2, r2 = em_prototypes(x, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mu1, mu2) and torch.equal(r1, r2)
    assert torch.allclose(r1.sum(-1), torch.ones(1, 40)) and torch.allclose(mu1.norm(dim=-1), torch.ones(1, 2))
    best = (mu1[0] @ torch.stack([a, b]).T).max(0).values               # each true direction has a prototype
    assert (best > 0.99).all(), best
    with pytest.raises(ValueError, match="n = 41"):
        em_prototypes(x, 41)


def test_the_paper_matches_the_most_similar_pairs_and_the_released_code_the_least():
    centres = torch.eye(3)[None]
    prototypes = torch.eye(3)[[2, 0, 1]][None]                          # prototype j is centre (j + 2) % 3's twin
    paper = match_prototypes(centres, prototypes)
    assert paper.tolist() == [[1, 2, 0]]                                # centre i -> its twin, cosine 1
    released = match_prototypes(centres, prototypes, released_code=True)
    partner = prototypes[0][released[0]]
    assert (partner * centres[0]).sum(1).tolist() == [0.0, 0.0, 0.0]    # every centre paired with an orthogonal one


def test_rejection_reads_the_diagonal_in_the_paper_and_column_zero_in_the_release():
    centres = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    prototypes = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])               # centre 1's partner: cosine -0.8
    match = torch.tensor([[0, 1]])
    paper = pg_loss(centres, prototypes, match, phi=0.1)
    assert paper.kept.tolist() == [[True, False]]
    released = pg_loss(centres, prototypes, match, phi=0.1, released_code=True)
    assert released.kept.tolist() == [[True, True]]                     # column 0: cos(centre 1, prototype 0) = 0.6


def test_pg_loss_on_aligned_orthogonal_prototypes_is_the_cross_entropy_by_hand():
    g, t = 4, 0.1
    centres = torch.eye(g)[None].requires_grad_()
    loss = pg_loss(centres, torch.eye(g)[None], torch.arange(g)[None], temperature=t)
    want = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (g - 1)))
    assert loss.value.item() == pytest.approx(want, rel=1e-3) and loss.kept.all()   # float32
    loss.value.backward()
    assert centres.grad is not None and centres.grad.abs().sum() > 0


def test_ema_smooths_and_the_released_code_skips_it():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    ema = EMAPrototypes(momentum=0.9)
    assert torch.equal(ema.update(a), a)
    torch.testing.assert_close(ema.update(b), F.normalize(0.9 * a + 0.1 * b, dim=-1))
    released = EMAPrototypes(momentum=0.9, released_code=True)
    released.update(a)
    assert torch.equal(released.update(b), b)


def test_captions_name_the_large_seen_classes_only():
    lab = np.array([[0] * 10 + [1] * 6 + [2] * 3 + [3] * 1 + [255] * 5])  # shares of 20 labelled: .5 .3 .15 .05
    assert image_labels(lab, 4) == [0, 1, 2, 3]
    assert image_labels(lab, 4, min_share=0.1) == [0, 1, 2]
    assert image_labels(lab, 4, exclude=[1]) == [0, 2, 3]               # an unseen class is never named
    names = ["road", "sky", "tree"]
    assert caption(names) == "a photo of road, sky and tree." and caption(["sky"]) == "a photo of sky."
    with pytest.raises(ValueError, match="label value 7"):
        image_labels(np.array([7]), 4)


def test_label_aware_infonce_counts_same_label_images_as_positives():
    pos = positives_from_labels([[0, 1], [1, 0], [2]])
    assert pos.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    img, txt = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), torch.randn(3, 5)
    plain = multi_positive_infonce(img, txt, torch.eye(3, dtype=torch.bool), 10.0)
    logits = 10.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    want = (F.cross_entropy(logits, torch.arange(3)) + F.cross_entropy(logits.T, torch.arange(3))) / 2
    torch.testing.assert_close(plain, want)
    # two images of the same classes, with two wordings of one caption on either side of them: label-aware
    # targets leave the images where they are, plain InfoNCE pulls each towards its own wording and away from the
    # twin's (a true match treated as a negative)
    captions = torch.tensor([[1.0, 0.3], [1.0, -0.3], [0.0, 1.0]])
    grads = []
    for positives in (pos, torch.eye(3) > 0):
        images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
        multi_positive_infonce(images, captions, positives, 10.0).backward()
        grads.append(images.grad[:2].norm().item())
    assert grads[0] < 1e-3 and grads[1] > 1.0, grads


def test_naming_keeps_the_top_k_classes_and_the_background_rule():
    texts = torch.eye(4)
    groups = torch.tensor([[1.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    image = torch.tensor([1.0, 0.5, 0.1, 0.0])                           # the image supports classes 0, 1 (and 2)
    probs = name_groups(groups, texts, image, logit_scale=10.0, top_k=2)
    assert (probs[:, 2:] == 0).all() and torch.allclose(probs.sum(1), torch.ones(2))
    assignment = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])        # pixel 2 split between the groups
    assert pixel_labels(assignment, probs).tolist()[0] == 0
    labels = pixel_labels(assignment, probs, background=0.8)               # group 1: 0.5 / 0.5 over classes 0, 1
    assert labels.tolist() == [1, 0, 0]              # class 0 is label 1; a split and an undecided pixel: background


def test_the_oracle_gives_each_group_its_majority_class():
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    truth = torch.tensor([3, 3, 1, 2, 255, 255])
    assert oracle_labels(groups, truth, 4).tolist() == [3, 3, 3, 2, 2, 255]


def test_a_tiny_contrastive_model_fits_its_captions():
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(12, 16, generator=g), [[i % 3] for i in range(12)]
    texts = torch.randn(3, 8, generator=g)
    encoder = torch.nn.Linear(16, 8)
    opt = torch.optim.Adam(encoder.parameters(), lr=0.05)
    pos = positives_from_labels(labels)
    losses = []
    for _ in range(60):
        loss = multi_positive_infonce(encoder(feats), texts[[l[0] for l in labels]], pos, 10.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
