"""PGSeg's CPU training (prolab.wovss.train): captions without unseen names, one L_PG per grouping stage, a loss
that falls on a fixed batch, and the evaluation's report. Random image weights (pretrained=None) keep it fast."""
import json

import pytest
import torch

from prolab.wovss.train import CaptionBank, GroupingModel, WovssConfig, evaluate_wovss, npr_losses, train_wovss

TINY = WovssConfig(iters=2, batch_size=4, pretrained=None)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="preset = 'big'"):
        WovssConfig(preset="big")
    with pytest.raises(ValueError, match="batch_size = 1"):
        WovssConfig(batch_size=1)


def test_training_captions_never_name_an_unseen_class(minilm):
    from prolab.datasets import unseen_class_names
    from prolab.train.config import TrainConfig
    from prolab.train.data import open_split

    ds = open_split(TrainConfig.demo(), "train")
    bank = CaptionBank(ds, list(ds.class_names), minilm, 0.05, seed=0)
    assert len(bank.captions) == len(ds) and bank.embeddings.shape == (len(ds), 384)
    words = " ".join(bank.captions)
    assert not any(f" {u}" in words for u in unseen_class_names("synthetic_outdoor"))
    assert "road" in words and "sky" in words


def test_each_grouping_stage_gets_its_prototype_loss_and_a_fixed_batch_is_fitted(minilm):
    from prolab.datasets.transforms import to_tensor
    from prolab.train.config import TrainConfig
    from prolab.train.data import open_split

    torch.manual_seed(0)
    ds = open_split(TrainConfig.demo(), "train")
    x = torch.stack([to_tensor(ds.load(i)[0]) for i in range(6)])
    text = torch.from_numpy(minilm.encode([f"a photo of item {i}." for i in range(6)])).float()
    model = GroupingModel(TINY, 384).train()
    out = model(x)
    assert [tuple(h.shape[1:2]) for h in out["stage_inputs"][:3]] == [(64,), (16,), (4,)]
    g = torch.Generator().manual_seed(0)
    pg, guide = npr_losses(out, TINY, g)
    assert len(pg) == len(guide) == 2
    from prolab.wovss import multi_positive_infonce

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        out = model(x)
        loss = multi_positive_infonce(out["image"], model.text(text), torch.eye(6, dtype=torch.bool), model.scale())
        loss = loss + 0.1 * sum(npr_losses(out, TINY, g)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5]), losses         # noisy step to step: compare fives


def test_a_short_run_trains_and_reports_oracle_named_and_trivial_numbers(minilm):
    model, log = train_wovss(TINY, progress=False)
    assert [r["iteration"] for r in log] == [1, 2] and {"contrastive", "pg_stage1", "pg_stage2"} <= set(log[0])
    res = evaluate_wovss(model, TINY, embedder=minilm, limit=2, progress=False)
    assert {"oracle final", "oracle stage 1", "named"} <= set(res) and set(res["trivial grid"]) == {1, 4, 16}
    assert set(res["named"]["unseen IoU"]) == {"bus", "boat"} and res["unseen protocol"]["images"] == 1
    assert res["trivial grid"][1] < res["trivial grid"][16]             # more cells, closer to the labels


def test_the_kits_grouping_terms_on_hand_built_cases():
    from prolab.wovss.train import assignment_guidance, group_balance

    one_hot = torch.eye(4)[None]                                          # 4 tokens, each alone in its group
    assert group_balance([one_hot]).item() == pytest.approx(0.0, abs=1e-5)
    collapsed = torch.zeros(1, 4, 4)
    collapsed[:, 0] = 1                                                    # every token in group 0
    uniform = torch.full((1, 4, 4), 0.25)                                  # every token unsure
    assert group_balance([collapsed]).item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
    assert group_balance([uniform]).item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
    # guidance: 5 tokens, 3 groups; token n's EM cluster is cluster_of[n]; group g is matched to prototype match[g]
    cluster_of = torch.tensor([2, 0, 1, 2, 0])
    resp = torch.eye(3)[cluster_of][None]                                 # (B, N tokens, prototypes), not square
    match = torch.tensor([[1, 2, 0]])                                     # group 0 <- prototype 1, ...
    group_of = torch.tensor([[1, 2, 0].index(int(c)) for c in cluster_of])
    follows = torch.eye(3)[group_of].T[None]                              # (B, G, N): each token in its group
    assert assignment_guidance(follows, resp, match).item() == pytest.approx(0.0, abs=1e-5)
    by_cluster = torch.eye(3)[cluster_of].T[None]                         # right clusters, unmatched group ids
    assert assignment_guidance(by_cluster, resp, match).item() > 10
    soft = torch.full((1, 3, 5), 1 / 3)
    assert assignment_guidance(soft, resp, match).item() == pytest.approx(torch.log(torch.tensor(3.0)).item(), abs=1e-5)


def test_both_settings_start_alike_and_evaluation_repeats(minilm):
    """The released code's extra modules are made last on their own random stream: every weight both settings
    share starts equal; an evaluation run twice gives the same numbers (the EM starts are seeded)."""
    from dataclasses import replace

    torch.manual_seed(0)
    paper = GroupingModel(TINY, 384)
    torch.manual_seed(0)
    released = GroupingModel(replace(TINY, released_code=True), 384)
    shared = paper.state_dict()
    assert len(released.em_recon) == 2
    for k, v in released.state_dict().items():
        if not k.startswith("em_recon."):
            assert torch.equal(v, shared[k]), k
    cfg = replace(TINY, released_code=True)
    released.eval()
    a = evaluate_wovss(released, cfg, embedder=minilm, limit=3, progress=False)
    b = evaluate_wovss(released, cfg, embedder=minilm, limit=3, progress=False)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)   # (NaN for a class not present)
    assert a["final groups"]["of"] == 4 and 0 < a["final groups"]["largest share"] <= 1


def test_groups_can_be_named_by_descriptions(minilm):
    """class_texts: one unit row per class, the mean of its description embeddings; not the name's prompt;
    a descriptor file of other classes is refused, naming the file."""
    from prolab.properties import default_descriptor_file
    from prolab.train.config import TrainConfig
    from prolab.train.data import open_split
    from prolab.wovss.train import class_texts

    names = list(open_split(TrainConfig.demo(), "val").class_names)
    by_name = class_texts(minilm, names)
    by_desc = class_texts(minilm, names, default_descriptor_file("synthetic_outdoor"))
    assert by_desc.shape == by_name.shape == (18, 384)
    assert torch.allclose(by_desc.norm(dim=-1), torch.ones(18), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(by_desc, torch.nn.functional.normalize(by_name, dim=-1))
    assert (cos < 0.99).all() and (cos > 0.2).all()                     # related to the name, not the same text
    with pytest.raises(ValueError, match="d247051e.json"):
        class_texts(minilm, names[:5], default_descriptor_file("synthetic_outdoor"))
