"""The groundingdino-py backend (original Grounding DINO, Swin-T OGC).

The end-to-end test runs in a separate interpreter named by PSI_GDINO_PY_PYTHON
(groundingdino-py 0.4.0 + transformers < 5; see external_python.py). There it saves
a tiny random BERT folder, builds the package's own SwinT-OGC model (Swin-T backbone
as in the config; encoder/decoder layers, queries and FFN width shrunk through
config_overrides to stay quick on CPU) with random weights, saves it as the official
{"model": state_dict} .pth, and loads it back through load_groundingdino_py.
The remaining tests run in the main venv (transformers >= 5).
"""

import sys
import types
from pathlib import Path

import pytest

from external_python import require_python, run_script
from psi_sampler.rewards import grounding_py
from psi_sampler.rewards.grounding_py import load_groundingdino_py
from psi_sampler.rewards.loading import RewardUnavailableError

HERE = Path(__file__).resolve().parent

BATCH_TOLERANCE = 1e-4  # batch of 2 vs one at a time, logits and boxes (float32 CPU)

END_TO_END = f"""
import sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
sys.path.insert(0, {str(HERE)!r})
import torch
from transformers import BertConfig, BertModel
from rewards_testing import bert_vocab, rand_images, seeded
from psi_sampler.rewards.grounding_py import build_swint_ogc, load_groundingdino_py
from psi_sampler.rewards.layout import LayoutReward
from psi_sampler.rewards.quantity import QuantityReward
from psi_sampler.rewards.loading import RewardLoadError
from psi_sampler.rewards.targets import CountTarget, LayoutTarget

start = time.time()
torch.set_num_threads(2)
OVERRIDES = dict(enc_layers=1, dec_layers=2, num_queries=20, dim_feedforward=64)
SIZE = dict(shortest=64, longest=96)

bert = Path("bert")
bert.mkdir()
vocab = bert_vocab()
(bert / "vocab.txt").write_text("\\n".join(sorted(vocab, key=vocab.get)) + "\\n")
with seeded(0):
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(bert)
with seeded(1):
    built = build_swint_ogc(bert, OVERRIDES)
    # DETR-style init zeroes the last box layer (boxes = anchors); give it weights
    for module in (built.bbox_embed[0], built.transformer.enc_out_bbox_embed):
        torch.nn.init.normal_(module.layers[-1].weight, std=0.1)
state = built.state_dict()
# the official file was saved by a 2022 transformers, whose BERT kept position_ids in the state dict
official = dict(state, **{{"bert.embeddings.position_ids": torch.arange(64)[None]}})
torch.save({{"model": official}}, "groundingdino_swint_ogc.pth")

result = {{"params_m": sum(p.numel() for p in built.parameters()) / 1e6}}
detector = load_groundingdino_py("groundingdino_swint_ogc.pth", bert, config_overrides=OVERRIDES, **SIZE)
loaded = detector.model.state_dict()
result["same_weights"] = set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
result["frozen"] = not any(p.requires_grad for p in detector.model.parameters())
result["backend"] = detector.backend
result["setup_s"] = time.time() - start

images = rand_images(2, 64, 80, seed=3)
text = detector.encode(("cat", "red car"))
with torch.no_grad():
    together = detector.detect(images, text)
    alone = [detector.detect(images[i : i + 1], text) for i in range(2)]
result["logits_shape"] = list(together.phrase_logits.shape)
result["boxes_shape"] = list(together.boxes.shape)
result["finite"] = bool(torch.isfinite(together.phrase_logits).all() and torch.isfinite(together.boxes).all())
result["batch_logit_diff"] = (together.phrase_logits - torch.cat([a.phrase_logits for a in alone])).abs().max().item()
result["batch_box_diff"] = (together.boxes - torch.cat([a.boxes for a in alone])).abs().max().item()

layout = LayoutReward(detector, LayoutTarget.build(["cat", "red car"], [[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.9, 0.9]]))
x = images.clone().requires_grad_(True)
scores = layout(x)
scores.sum().backward()
result["layout_scores"] = scores.tolist()
result["grad_finite"] = bool(torch.isfinite(x.grad).all())
result["grad_abs_sum"] = x.grad.abs().sum().item()
with torch.no_grad():
    counts = QuantityReward(detector, CountTarget.build(["cat"], [2]))(images[:1])
result["quantity_scores"] = counts.tolist()
result["forward_s"] = time.time() - start - result["setup_s"]

def error(make_file, bert_folder=bert, shortest_override=None):
    path = make_file()
    size = SIZE if shortest_override is None else dict(SIZE, shortest=shortest_override)
    try:
        load_groundingdino_py(path, bert_folder, config_overrides=OVERRIDES, **size)
    except (RewardLoadError, ValueError) as err:
        return type(err).__name__ + ": " + str(err)
    return "no error"

def renamed_key():
    changed = dict(state)
    changed["bert.pooler.dense.weightX"] = changed.pop("bert.pooler.dense.weight")
    torch.save({{"model": changed}}, "renamed.pth")
    return "renamed.pth"

def other_model():
    torch.save({{"model": {{"layers.0.weight": torch.zeros(2, 2)}}}}, "other.pth")
    return "other.pth"

from safetensors.torch import save_file
# a flat safetensors conversion with DDP's "module." prefix loads too (shared tensors saved as copies)
save_file({{"module." + k: v.clone().contiguous() for k, v in state.items()}}, "flat.safetensors")
flat = load_groundingdino_py("flat.safetensors", bert, config_overrides=OVERRIDES, **SIZE).model.state_dict()
result["safetensors_same_weights"] = all(torch.equal(flat[k], state[k]) for k in state)

result["error_renamed"] = error(renamed_key)
result["error_other"] = error(other_model)
result["error_missing"] = error(lambda: "absent.pth")
result["error_bert"] = error(lambda: "groundingdino_swint_ogc.pth", bert_folder="no_bert")
try:
    load_groundingdino_py("groundingdino_swint_ogc.pth", bert, config_overrides={{"num_querys": 5}})
    result["error_override"] = "no error"
except ValueError as err:
    result["error_override"] = str(err)
# the smallest accepted input (20 queries: 32 px, 4² + 2² + 1 + 1 = 22 positions) runs; one step below is refused
result["error_small"] = error(lambda: "groundingdino_swint_ogc.pth", shortest_override=24)
edge = load_groundingdino_py("groundingdino_swint_ogc.pth", bert, config_overrides=OVERRIDES, shortest=32, longest=32)
with torch.no_grad():
    result["edge_shape"] = list(edge.detect(rand_images(1, 40, 40, seed=4), text).boxes.shape)
result["total_s"] = time.time() - start
report(result)
"""


def test_groundingdino_py_end_to_end(tmp_path):
    python = require_python("PSI_GDINO_PY_PYTHON")
    out = run_script(python, END_TO_END, tmp_path=tmp_path, timeout=300)
    print({k: v for k, v in out.items() if k.endswith("_s") or k == "params_m"})

    assert out["backend"] == "groundingdino-py"
    assert out["same_weights"] and out["frozen"] and out["safetensors_same_weights"]
    assert out["logits_shape"] == [2, 20, 2] and out["boxes_shape"] == [2, 20, 4]
    assert out["finite"]
    assert out["batch_logit_diff"] < BATCH_TOLERANCE and out["batch_box_diff"] < BATCH_TOLERANCE
    assert out["grad_finite"] and out["grad_abs_sum"] > 0
    assert len(out["layout_scores"]) == 2 and all(0.0 <= s <= 1.0 for s in out["layout_scores"])
    assert len(out["quantity_scores"]) == 1 and all(s <= 0.0 for s in out["quantity_scores"])

    renamed = out["error_renamed"]
    assert renamed.startswith("RewardLoadError") and "renamed.pth" in renamed
    assert "missing keys ['bert.pooler.dense.weight']" in renamed
    assert "unexpected keys ['bert.pooler.dense.weightX']" in renamed
    other = out["error_other"]
    assert other.startswith("RewardLoadError") and "other.pth" in other and "wrong file" in other
    assert "groundingdino_swint_ogc.pth" in other  # says what file was expected
    missing = out["error_missing"]
    assert missing.startswith("RewardLoadError") and "file not found" in missing and "absent.pth" in missing
    bert = out["error_bert"]
    assert bert.startswith("RewardLoadError") and "no_bert" in bert and "bert-base-uncased" in bert
    assert "'num_querys' is not an entry" in out["error_override"] and "num_queries" in out["error_override"]
    small = out["error_small"]
    assert small.startswith("ValueError") and "shortest_side must be >= 32" in small and "got 24" in small
    assert out["edge_shape"] == [1, 20, 4]


def test_groundingdino_py_without_its_model_dependencies(monkeypatch, tmp_path):
    """A groundingdino install whose model code cannot import gives a message, not a traceback."""
    monkeypatch.setitem(sys.modules, "groundingdino", types.ModuleType("groundingdino"))
    monkeypatch.setattr(grounding_py, "transformers_major", lambda: 4)
    with pytest.raises(RewardUnavailableError) as info:
        load_groundingdino_py(tmp_path / "groundingdino_swint_ogc.pth", tmp_path)
    message = str(info.value)
    assert "cannot be imported" in message and "groundingdino.models" in message
    assert "transformers < 5" in message


def test_groundingdino_py_needs_bert_folder(monkeypatch):
    monkeypatch.setitem(sys.modules, "groundingdino", types.ModuleType("groundingdino"))
    monkeypatch.setattr(grounding_py, "transformers_major", lambda: 4)
    assert grounding_py.groundingdino_py_usable()  # offered by the nodes on such an interpreter
    with pytest.raises(ValueError, match="needs bert_folder .*bert-base-uncased.*got None"):
        load_groundingdino_py("groundingdino_swint_ogc.pth")
    with pytest.raises(ValueError, match=r"needs checkpoint \(groundingdino_swint_ogc.pth\), got None"):
        load_groundingdino_py(None, "bert-base-uncased")
