"""ProLab inside mmsegmentation 1.x (marker ``mmseg``; ``make test-mmseg`` installs mmsegmentation, mmengine and
mmcv-lite first): the tiny config trains through mmengine's Runner and evaluates with IoUMetric, resumes from
its checkpoint under torch's weights_only loading, gives the kit's own model's loss and predictions for the same
weights and inputs, and every paper config builds its model and takes one step at a tiny crop."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.mmseg

mmseg = pytest.importorskip("mmseg", reason="`make mmseg` installs mmsegmentation")

from prolab import paths  # noqa: E402
from prolab.defaults import aux_weight_for  # noqa: E402

TINY = "configs/mmseg/prolab_tiny_synthetic.py"
PAPER = [f"configs/mmseg/{m}_{d}.py" for d in ("ade20k_150", "coco_stuff_171", "pascal_context_59", "cityscapes_19",
                                               "bdd100k_19") for m in ("prolab", "category")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One scratch cache for the module (the embedded default is rendered once)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PROLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def _runner(work_dir, iters, resume=False, **over):
    from prolab.interop.mmseg.train import build_runner

    options = {"train_cfg.max_iters": iters, "train_cfg.val_interval": iters,
               "default_hooks.checkpoint.interval": 2, "default_hooks.logger.interval": 1,
               "train_dataloader.batch_size": 4, **over}
    return build_runner(str(paths.repo_root() / TINY), str(work_dir), resume, cfg_options=options)


def test_tiny_config_trains_evaluates_and_resumes(cache, tmp_path):
    runner = _runner(tmp_path, 3)
    runner.train()
    metrics = runner.val_loop.run()
    assert 0 <= metrics["mIoU"] <= 100 and (tmp_path / "iter_3.pth").exists()
    ck = torch.load(tmp_path / "iter_3.pth", map_location="cpu", weights_only=True)    # no pickle of code
    assert ck["meta"]["iter"] == 3 and any(k.startswith("decode_head.bank") for k in ck["state_dict"])
    from mmengine.hooks import Hook

    class Count(Hook):
        def __init__(self):
            self.iters = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.iters.append(runner.iter)

    again = _runner(tmp_path, 5, resume=True)
    count = Count()
    again.register_hook(count)
    again.train()
    assert again.iter == 5 and count.iters == [3, 4]   # the second run trained iterations 4 and 5 only


@pytest.mark.parametrize("head_init,normalize_bank", [("release", True), ("pytorch", False)])
def test_plugin_and_kit_start_alike(cache, head_init, normalize_bank):
    """Built fresh, both front ends hold the same bank (rows L2-normalised at load, or the raw centres) and
    initialise their embedding layers the same way (the release's N(0, 0.01) with zero bias, or PyTorch's)."""
    from mmengine.config import Config

    from prolab.properties import PropertySpace
    from prolab.segment import ModelDefaults, SegModel

    import prolab.interop.mmseg.plugin  # noqa: F401

    cfg = Config.fromfile(str(paths.repo_root() / TINY))
    cfg.model.backbone.pretrained = None
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.head_init, head.normalize_bank = head_init, normalize_bank
    mm = prolab.interop.mmseg.plugin.build_model(cfg)
    space = PropertySpace.load(paths.resolve(cfg.property_space))
    kit = SegModel(18, "property", torch.as_tensor(space.bank), torch.as_tensor(space.signatures), 0.04,
                   defaults=ModelDefaults(pretrained=None, channels=64, aux_channels=32, head_init=head_init,
                                          normalize_bank=normalize_bank))
    raw = torch.as_tensor(space.bank)
    want = torch.nn.functional.normalize(raw, dim=1) if normalize_bank else raw
    for bank in (kit.bank, mm.decode_head.bank, mm.auxiliary_head.bank):
        torch.testing.assert_close(bank, want)
    assert mm.auxiliary_head.loss_weight == 1.0       # the release's effective auxiliary weight (property)
    for conv in (kit.classifier, kit.aux_classifier, mm.decode_head.classifier, mm.auxiliary_head.classifier,
                 mm.decode_head.warmup_classifier):
        std, bias = float(conv.weight.detach().std()), float(conv.bias.detach().abs().max())
        if head_init == "release":
            assert 0.009 < std < 0.011 and bias == 0.0
        else:   # kaiming-uniform with a = sqrt(5): std 1 / sqrt(3 fan_in), bias nonzero
            assert std == pytest.approx((3 * conv.weight.shape[1]) ** -0.5, rel=0.1) and bias > 0


def test_plugin_and_kit_model_agree(cache):
    """Same weights, same inputs: the same total loss (main + the release's auxiliary weight, 1.0 for property
    heads) and the same predicted classes."""
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from prolab.interop.mmseg.convert import kit_to_mmseg, mmseg_to_kit
    from prolab.properties import PropertySpace
    from prolab.segment import ModelDefaults, SegModel
    from prolab.segment.supervision import segmentation_loss

    import prolab.interop.mmseg.plugin  # noqa: F401

    cfg = Config.fromfile(str(paths.repo_root() / TINY))
    cfg.model.backbone.pretrained = None
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.dropout = 0.0
    torch.manual_seed(0)
    mm = prolab.interop.mmseg.plugin.build_model(cfg)
    space = PropertySpace.load(paths.resolve(cfg.property_space))
    kit = SegModel(18, "property", torch.as_tensor(space.bank), torch.as_tensor(space.signatures), 0.04,
                   defaults=ModelDefaults(pretrained=None, channels=64, aux_channels=32, dropout=0.0))
    missing, unexpected = mm.load_state_dict(kit_to_mmseg(kit.state_dict()), strict=False)
    assert not unexpected and all(k.startswith("data_preprocessor") for k in missing)
    assert set(mmseg_to_kit(mm.state_dict())) == set(kit.state_dict())
    x = torch.randn(2, 3, 64, 96)
    labels = torch.randint(0, 16, (2, 64, 96))
    labels[:, :5] = 255
    samples = []
    for i in range(2):
        s = SegDataSample(metainfo={"img_shape": (64, 96), "ori_shape": (64, 96), "pad_shape": (64, 96)})
        s.gt_sem_seg = PixelData(data=labels[i][None])
        samples.append(s)
    kit.train(), mm.train()
    ref = segmentation_loss(kit(x), labels, kit.signatures, 0.04, "cos_sigmoid", aux_weight_for("property"))
    losses = mm.loss(x, samples)
    total = sum(v for k, v in losses.items() if "loss" in k)
    torch.testing.assert_close(total, ref, rtol=1e-5, atol=1e-6)
    kit.eval(), mm.eval()
    with torch.no_grad():
        want = kit.predict_scores(x).argmax(1)
        got = torch.stack([s.pred_sem_seg.data[0] for s in mm.predict(x, samples)])
    assert (got == want).float().mean() > 0.999     # ties at float precision aside


@pytest.mark.parametrize("config", PAPER)
def test_paper_config_builds_and_steps(cache, config):
    """The paper's network (ViT-Adapter-B + UPerNet 512 + FCN 256), its K and classes, one forward/backward at a
    64 px crop; the property space's classes are the mmseg dataset's, in its order."""
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.registry import DATASETS
    from mmseg.structures import SegDataSample

    from prolab.datasets.classes import normalize_class_name
    from prolab.properties import PropertySpace

    import prolab.interop.mmseg.plugin  # noqa: F401

    cfg = Config.fromfile(str(paths.repo_root() / config))
    cfg.model.backbone.pretrained = None
    head = cfg.model.decode_head
    dataset_cls = DATASETS.get(cfg.train_dataloader.dataset.type)
    names = [normalize_class_name(c) for c in dataset_cls.METAINFO["classes"]]
    assert head.num_classes == len(names)
    if head.mode == "property":
        space = PropertySpace.load(paths.resolve(head.property_space))
        assert [normalize_class_name(c) for c in space.class_names] == names
        assert space.n_properties == {150: 256, 171: 256, 59: 128, 19: 32}[len(names)]
    torch.manual_seed(0)
    model = prolab.interop.mmseg.plugin.build_model(cfg)
    x = torch.randn(1, 3, 64, 64)
    s = SegDataSample(metainfo={"img_shape": (64, 64), "ori_shape": (64, 64), "pad_shape": (64, 64)})
    s.gt_sem_seg = PixelData(data=torch.randint(0, head.num_classes, (1, 64, 64)))
    model.train()
    loss = sum(v for k, v in model.loss(x, [s]).items() if "loss" in k)
    loss.backward()
    assert torch.isfinite(loss) and model.decode_head.classifier.weight.grad.abs().sum() > 0
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay == 0.95 and cfg.train_cfg.max_iters == 160000


def test_warmup_hook_and_standins(cache):
    from types import SimpleNamespace

    from prolab.interop.mmseg.hooks import ProLabOneHotWarmupHook
    from prolab.interop.mmseg.standins import CompiledOpUnavailable

    import mmcv._ext as ext

    if getattr(ext, "PROLAB_STANDIN", False):
        with pytest.raises(CompiledOpUnavailable, match="mmcv-lite"):
            ext.nms(None)
    heads = SimpleNamespace(decode_head=SimpleNamespace(onehot_warmup=False),
                            auxiliary_head=SimpleNamespace(onehot_warmup=False))
    hook = ProLabOneHotWarmupHook(iters=2)
    for it, want in ((0, True), (1, True), (2, False)):
        hook.before_train_iter(SimpleNamespace(model=heads, iter=it), it)
        assert heads.decode_head.onehot_warmup is want and heads.auxiliary_head.onehot_warmup is want
    with pytest.raises(ValueError, match="iters"):
        ProLabOneHotWarmupHook(iters=-1)


def test_notebook_05_cell(cache, tmp_path, monkeypatch):
    from prolab.interop import mmseg as front

    assert "skipped" in front.tiny_run(0)
    out = front.tiny_run(2, work_dir=str(tmp_path))
    assert "mIoU" in out and (tmp_path / "iter_2.pth").exists()
    monkeypatch.setattr(front, "available", lambda: False)
    assert "make mmseg" in front.tiny_run(2)
