"""Box maths, phrase tokens, matching on constructed detections, tiny Grounding DINO end to end."""

import json
import sys
import types

import pytest
import torch

from rewards_testing import assert_batch_equals_single, input_gradient, rand_images
from psi_sampler.rewards import grounding_py
from psi_sampler.rewards.grounding import (
    TransformersGroundingDino,
    box_iou,
    cxcywh_to_xyxy,
    load_grounding_dino,
    phrase_logits,
    tokenize_phrases,
)
from psi_sampler.rewards.grounding_py import load_groundingdino_py
from psi_sampler.rewards.layout import LayoutReward, greedy_matched_iou, soft_matched_iou
from psi_sampler.rewards.loading import RewardLoadError, RewardUnavailableError
from psi_sampler.rewards.targets import LayoutTarget


def test_box_iou_exact_values():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 1, 1], [0, 0, 1, 1]])
    b = torch.tensor([[1.0, 1, 3, 3], [1, 1, 2, 2], [2, 2, 3, 3], [0, 0, 1, 1]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([1 / 7, 1 / 16, 0.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])), torch.tensor([0.4, 0.3, 0.6, 0.7]))


def test_phrase_tokens_match_joint_tokenisation(tiny_grounding_dino):
    _, tokenizer = tiny_grounding_dino
    text = tokenize_phrases(tokenizer, ("cat", "red car"), max_len=32)
    assert text.input_ids[0].tolist() == tokenizer("cat. red car.")["input_ids"]
    assert text.token_mask.tolist() == [
        [False, True, False, False, False, False, False],
        [False, False, False, True, True, False, False],
    ]
    logits = torch.arange(2 * 3 * 9, dtype=torch.float32).view(2, 3, 9)
    torch.testing.assert_close(phrase_logits(logits, text.token_mask), logits[:, :, [1, 4]])
    with pytest.raises(ValueError, match="at most 5"):
        tokenize_phrases(tokenizer, ("cat", "red car"), max_len=5)


def _detections():
    """Two confident detections (one per target place) and two background queries."""
    boxes = torch.tensor([[[0.0, 0.0, 0.4, 0.5], [0.6, 0.6, 1.0, 0.9], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.5, 0.5]]])
    logits = torch.tensor([[[2.0], [2.0], [-10.0], [-10.0]]])  # one phrase, [B=1, Q=4, P=1]
    targets = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]])
    return logits, boxes, targets


def test_soft_matching_equals_exact_iou_when_one_query_dominates():
    logits, boxes, targets = _detections()
    exact = box_iou(boxes[0, :2], targets)  # 0.8 and 0.75
    torch.testing.assert_close(exact, torch.tensor([0.8, 0.75]))
    index = torch.tensor([0, 0])  # both targets share the phrase
    sharp = soft_matched_iou(logits, boxes, targets, index, temperature=0.25, iou_weight=200.0)
    torch.testing.assert_close(sharp, exact[None], atol=1e-6, rtol=0)
    default = soft_matched_iou(logits, boxes, targets, index)
    torch.testing.assert_close(default, exact[None], atol=5e-3, rtol=0)
    # confidence dominates without the overlap term: a lone confident query gives its exact IoU
    lone = torch.tensor([[[5.0], [-10.0], [-10.0], [-10.0]]])
    torch.testing.assert_close(
        soft_matched_iou(lone, boxes, targets[:1], torch.tensor([0]), iou_weight=0.0),
        torch.tensor([[0.8]]), atol=1e-6, rtol=0,
    )


def test_soft_matching_gradients_reach_boxes_and_logits():
    logits, boxes, targets = _detections()
    logits = logits.clone().requires_grad_(True)
    boxes = boxes.clone().requires_grad_(True)
    soft_matched_iou(logits, boxes, targets, torch.tensor([0, 0])).sum().backward()
    assert boxes.grad[0, :2].abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_greedy_matching_is_the_reference_rule():
    logits, boxes, targets = _detections()
    boxes = boxes.clone().requires_grad_(True)
    iou = greedy_matched_iou(logits, boxes, targets, torch.tensor([0, 0]))
    torch.testing.assert_close(iou, torch.tensor([[0.8, 0.75]]))
    iou.sum().backward()
    assert boxes.grad[0, :2].abs().sum() > 0 and boxes.grad[0, 2:].abs().sum() == 0
    # no confident candidate overlaps: fall back to the phrase's top query
    far = torch.tensor([[0.9, 0.0, 1.0, 0.1]])
    torch.testing.assert_close(greedy_matched_iou(logits, boxes.detach(), far, torch.tensor([0])),
                               box_iou(boxes[0, :1].detach(), far)[None])


def _detector(tiny_grounding_dino):
    model, tokenizer = tiny_grounding_dino
    return TransformersGroundingDino(model, tokenizer, shortest=96, longest=128)


@pytest.mark.parametrize("matching", ["soft", "greedy"])
def test_layout_reward_tiny_grounding_dino(tiny_grounding_dino, matching):
    # large target boxes: every predicted box overlaps them, so IoU has a gradient in both modes
    target = LayoutTarget.build(["cat", "red car", "cat"], [[0, 0, 70, 60], [5, 2, 80, 64], [3, 1, 78, 63]],
                                image_size=(80, 64))
    reward = LayoutReward(_detector(tiny_grounding_dino), target, matching=matching)
    images = rand_images(3, 64, 80, seed=11)
    scores = reward(images)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert_batch_equals_single(reward, images, atol=1e-5)
    input_gradient(reward, images)
    assert "cat" in reward.describe()


def test_loader_from_folder(tmp_path, tiny_grounding_dino):
    model, tokenizer = tiny_grounding_dino
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 96, "longest_edge": 128}}))
    loaded = load_grounding_dino(tmp_path)
    assert (loaded.shortest, loaded.longest) == (96, 128)
    assert not any(p.requires_grad for p in loaded.model.parameters())
    target = LayoutTarget.build(["dog"], [[0.1, 0.1, 0.5, 0.6]])
    images = rand_images(2, 64, 64, seed=12)
    torch.testing.assert_close(LayoutReward(loaded, target)(images),
                               LayoutReward(_detector(tiny_grounding_dino), target)(images))


def test_loader_errors(tmp_path):
    with pytest.raises(RewardLoadError) as info:
        load_grounding_dino(tmp_path / "gd")
    assert "IDEA-Research/grounding-dino-base" in str(info.value) and "folder not found" in str(info.value)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(RewardLoadError, match="vocab.txt or tokenizer.json"):
        load_grounding_dino(tmp_path)


def test_groundingdino_py_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "groundingdino", None)  # import fails as if not installed
    assert not grounding_py.groundingdino_py_usable()
    with pytest.raises(RewardUnavailableError) as info:
        load_groundingdino_py("groundingdino_swint_ogc.pth")
    message = str(info.value)
    assert "groundingdino" in message and "not installed" in message
    assert "grounding-dino-base" in message and "transformers" in message


def test_groundingdino_py_on_transformers_5(monkeypatch):
    monkeypatch.setitem(sys.modules, "groundingdino", types.ModuleType("groundingdino"))
    monkeypatch.setattr(grounding_py, "transformers_major", lambda: 5)
    assert not grounding_py.groundingdino_py_usable()
    with pytest.raises(RewardUnavailableError) as info:
        load_groundingdino_py("groundingdino_swint_ogc.pth")
    message = str(info.value)
    assert "cannot build its model on transformers" in message and "< 5" in message
    assert "grounding-dino-base" in message


def test_bad_detector_and_settings(tiny_grounding_dino):
    target = LayoutTarget.build(["cat"], [[0.1, 0.1, 0.5, 0.5]])
    with pytest.raises(TypeError, match="encode/detect/modules"):
        LayoutReward(object(), target)
    with pytest.raises(ValueError, match="matching must be one of"):
        LayoutReward(_detector(tiny_grounding_dino), target, matching="hungarian")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0; got 0"):
        LayoutReward(_detector(tiny_grounding_dino), target, temperature=0)
