"""PGSeg's CPU training (prolab.wovss.train): captions without unseen names, one L_PG per grouping stage, a loss
that falls on a fixed batch, and the evaluation's report. Random image weights (pretrained=None) keep it fast."""
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
    assert 0 <= res["oracle final"]["mIoU"] <= 100 and set(res["named"]["unseen IoU"]) == {"bus", "boat"}


def test_the_kits_grouping_terms_on_hand_built_cases():
    from prolab.wovss.train import assignment_guidance, group_balance

    one_hot = torch.eye(4)[None]                                          # 4 tokens, each alone in its group
    assert group_balance([one_hot]).item() == pytest.approx(0.0, abs=1e-5)
    collapsed = torch.zeros(1, 4, 4)
    collapsed[:, 0] = 1                                                    # every token in group 0
    uniform = torch.full((1, 4, 4), 0.25)                                  # every token unsure
    assert group_balance([collapsed]).item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
    assert group_balance([uniform]).item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
    # guidance: token n's EM cluster is n; group g is matched to prototype match[g]
    resp = torch.eye(4)[None]                                              # (B, N tokens, G prototypes)
    match = torch.tensor([[2, 0, 3, 1]])
    follows = torch.zeros(1, 4, 4)
    follows[0, [0, 1, 2, 3], [2, 0, 3, 1]] = 1                             # group g takes prototype match[g]'s token
    assert assignment_guidance(follows, resp, match).item() == pytest.approx(0.0, abs=1e-5)
    assert assignment_guidance(one_hot, resp, match).item() > 10           # right clusters, wrong groups
