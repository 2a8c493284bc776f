"""The adversarial contract between the detector, the discriminators and the step: one BoxList-to-RoI helper,
D scoring what it is given, the level pooler built once, and the step's state."""
import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.engine.adversarial import AdversarialTrainStep, build_adversarial_train_step
from maskrcnn_benchmark.modeling.discriminators import DiscriminatorBatches, RoIFeaturePooler, build_discriminators
from maskrcnn_benchmark.modeling.poolers import Pooler
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.boxlist_ops import boxes_to_rois


def test_boxes_to_rois_numbers_the_images_and_keeps_the_gradient():
    first = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], requires_grad=True)
    second = torch.tensor([[9.0, 10.0, 11.0, 12.0]], dtype=torch.float32)
    rois = boxes_to_rois([BoxList(first, (20, 20)), BoxList(torch.zeros(0, 4), (20, 20)), second])
    expected = torch.tensor([[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [2, 9, 10, 11, 12]], dtype=torch.float32)
    assert torch.equal(rois.detach(), expected)
    rois[:, 1:].sum().backward()
    assert torch.equal(first.grad, torch.ones(2, 4))
    assert boxes_to_rois([]).shape == (0, 5)
    assert torch.equal(boxes_to_rois([torch.zeros(0, 4, dtype=torch.float64)]), torch.zeros(0, 5, dtype=torch.float64))
    # maskrcnn-benchmark's name for it on the Pooler gives the same rows
    assert torch.equal(Pooler.convert_to_roi_format([BoxList(second, (20, 20))]), boxes_to_rois([second]))


def test_level_fusion_builds_its_pooler_once_and_matches_the_boxlist_pooler():
    torch.manual_seed(0)
    strides = [4, 8, 16, 32]
    features = [torch.randn(2, 3, 256 // s, 256 // s) for s in strides]
    rois = torch.tensor([[1.0, 0.0, 0.0, 255.0, 255.0], [0.0, 4.0, 4.0, 36.0, 36.0], [1.0, 4.0, 4.0, 60.0, 90.0]])
    pooler = RoIFeaturePooler(7, "ROIAlign", "level", sampling_ratio=2)
    pooled = pooler(features, strides, rois)
    built = list(pooler._level_poolers.values())
    pooler(features, strides, rois)
    assert len(built) == 1 and list(pooler._level_poolers.values())[0] is built[0]
    # the detector's pooler on the same boxes given as one BoxList per image, then put back in the RoI order
    reference = Pooler((7, 7), tuple(1.0 / s for s in strides), 2)
    per_image = [BoxList(rois[rois[:, 0] == i, 1:], (256, 256)) for i in range(2)]
    by_image = reference(features, per_image)
    order = [1, 0, 2]  # rows of by_image: image 0's RoI, then image 1's two in their order
    assert torch.equal(pooled, by_image[torch.tensor([order.index(k) for k in range(3)])])


def _gan_cfg():
    c = default_cfg.clone()
    c.merge_from_list(["MODEL.GAN.ENABLED", True, "MODEL.ROI_MASK_HEAD.RESOLUTION", 28,
                       "MODEL.GAN.BOX_DISC.CHANNELS", 4, "MODEL.GAN.MASK_DISC.CHANNELS", 4,
                       "MODEL.GAN.BOX_DISC.NUM_CONVS", 3, "MODEL.GAN.MASK_DISC.NUM_CONVS", 3,
                       "MODEL.GAN.BOX_DISC.POOLER_TYPE", "ROIAlign"])
    return c


def test_discriminators_forward_scores_real_and_fake_in_float32():
    torch.manual_seed(0)
    discs = build_discriminators(_gan_cfg(), 4).train()
    # 3 real then 3 fake boxes, 2 real then 2 fake masks
    inputs = DiscriminatorBatches(box=torch.randn(6, 4, 28, 28), mask=torch.randn(4, 4, 28, 28))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = discs(inputs)
    assert set(scores) == {"box", "mask"}
    assert all(t.dtype == torch.float32 for pair in scores.values() for t in pair)
    assert scores["box"][0].shape == (3,) and scores["mask"][1].shape[0] == 2
    # real and fake are judged in one batch (BatchNorm statistics over both): the halves of D's direct call
    expected_real, expected_fake = discs.box_disc(inputs.box).chunk(2)
    torch.testing.assert_close(scores["box"][0], expected_real.float(), rtol=0.02, atol=0.02)
    torch.testing.assert_close(scores["box"][1], expected_fake.float(), rtol=0.02, atol=0.02)
    box_only = discs(DiscriminatorBatches(box=inputs.box))
    assert set(box_only) == {"box"}


def _step(seed):
    torch.manual_seed(seed)
    c = _gan_cfg()
    model = torch.nn.Conv2d(3, 4, 1)
    model.backbone = model
    model.backbone.out_channels = 4
    g_optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return build_adversarial_train_step(c, model, g_optimizer)


def test_step_state_round_trips_under_the_checkpoint_names():
    step = _step(0)
    assert set(step.checkpoint_entries()) == {"discriminators", "d_optimizer", "d_scheduler"}  # float32: no scaler
    for p in step.discriminators.parameters():
        p.grad = torch.ones_like(p)
    step.d_optimizer.step()
    step.d_scheduler.step()
    state = step.state_dict()

    other = _step(1)
    assert not torch.equal(next(other.discriminators.parameters()), next(step.discriminators.parameters()))
    other.load_state_dict(state)
    for a, b in zip(other.discriminators.state_dict().values(), step.discriminators.state_dict().values()):
        assert torch.equal(a, b)
    assert other.d_scheduler.last_epoch == step.d_scheduler.last_epoch == 1
    assert other.d_optimizer.state_dict()["state"].keys() == step.d_optimizer.state_dict()["state"].keys()
    with pytest.raises(KeyError, match="^\"the adversarial step's state has no d_scheduler entry\"$"):
        other.load_state_dict({k: v for k, v in state.items() if k != "d_scheduler"})
    with pytest.raises(KeyError, match="the adversarial step's state has no d_optimizer, d_scheduler entry"):
        other.load_state_dict({"discriminators": state["discriminators"]})


def test_step_checkpoints_d_s_loss_scaler_under_its_name():
    # checkpoints written with DTYPE float16 hold D's scaler as "d_grad_scaler": the name must not move
    step = _step(0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    scaled = AdversarialTrainStep(step.model, step.discriminators, step.g_optimizer, step.d_optimizer,
                                  step.d_scheduler, d_scaler=scaler)
    assert scaled.checkpoint_entries()["d_grad_scaler"] is scaler


def test_step_without_schedule_or_scaler_has_only_what_it_holds():
    step = _step(0)
    bare = AdversarialTrainStep(step.model, step.discriminators, step.g_optimizer, step.d_optimizer)
    assert set(bare.state_dict()) == {"discriminators", "d_optimizer"}


def test_built_step_follows_every_model_gan_key_of_the_step_and_d_s_learning_rate():
    c = _gan_cfg()
    c.MODEL.GAN.BOX_WEIGHT, c.MODEL.GAN.MASK_WEIGHT = 0.3, 0.7
    c.MODEL.GAN.ADV_ONLY, c.MODEL.GAN.D_LOSS_WEIGHTED = True, True
    c.MODEL.GAN.START_ITER, c.MODEL.GAN.D_STEPS_PER_G_STEP = 5, 2
    c.MODEL.GAN.D_LR_FACTOR = 0.2
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    model.backbone = model
    model.backbone.out_channels = 4
    g_optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = build_adversarial_train_step(c, model, g_optimizer)
    assert step.model is model and step.g_optimizer is g_optimizer
    assert step.g_weights == {"loss_box_adv": 0.3, "loss_mask_adv": 0.7}
    assert step.d_weights == {"loss_box_disc": 0.3, "loss_mask_disc": 0.7}
    assert (step.adv_only, step.start_iter, step.d_steps) == (True, 5, 2)
    assert step.precision is None and step.g_scaler is None and step.d_scaler is None
    assert step.d_update_module is step.discriminators  # one process: D is not wrapped
    # the paper: D's learning rate is a fifth of G's (SOLVER.BASE_LR)
    assert step.d_optimizer.param_groups[0]["initial_lr"] == pytest.approx(c.SOLVER.BASE_LR * 0.2)
