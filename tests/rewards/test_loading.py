"""Safe weight loading: pickles that run code are refused; missing/wrong files are explained."""

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from psi_sampler.rewards.aesthetic import HEAD_SOURCE, load_aesthetic_head
from psi_sampler.rewards.loading import RewardLoadError, WeightsSource, check_model_folder, load_state_dict

SOURCE = WeightsSource("Test weights", "weights.pth (state dict)", "nowhere in particular")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    payload = {"layers.0.weight": torch.zeros(2), "trap": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(RewardLoadError) as info:
        load_aesthetic_head(path)
    message = str(info.value)
    assert "refused to unpickle" in message and "system" in message
    assert str(path) in message and "sac+logos+ava1-l14-linearMSE.pth" in message
    assert not marker.exists()


def test_missing_file_names_folder_expected_and_origin(tmp_path):
    with pytest.raises(RewardLoadError) as info:
        load_aesthetic_head(tmp_path / "nope.pth")
    message = str(info.value)
    assert "file not found" in message
    assert str(tmp_path / "nope.pth") in message
    assert HEAD_SOURCE.expected in message and "improved-aesthetic-predictor" in message


def test_garbage_file_is_explained(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RewardLoadError, match="not a readable PyTorch weights file"):
        load_state_dict(path, SOURCE)
    bad_st = tmp_path / "garbage.safetensors"
    bad_st.write_bytes(b"xx")
    with pytest.raises(RewardLoadError, match="not a valid safetensors file"):
        load_state_dict(bad_st, SOURCE)


def test_wrong_state_dict_is_explained(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"layers.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(RewardLoadError) as info:
        load_aesthetic_head(path)
    assert "wrong file" in str(info.value) and "missing keys" in str(info.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(RewardLoadError, match="no \\{name: tensor\\} state dict"):
        load_state_dict(path, SOURCE)


def test_safetensors_and_wrapped_state_dicts_load(tmp_path):
    tensors = {"w": torch.arange(4.0)}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": tensors}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        loaded = load_state_dict(tmp_path / name, SOURCE)
        torch.testing.assert_close(loaded["w"], tensors["w"])


def test_model_folder_check_lists_missing_files(tmp_path):
    with pytest.raises(RewardLoadError, match="folder not found"):
        check_model_folder(tmp_path / "absent", SOURCE)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RewardLoadError) as info:
        check_model_folder(tmp_path, SOURCE, need=("vocab.txt|tokenizer.json",))
    message = str(info.value)
    assert "model.safetensors" in message and "vocab.txt or tokenizer.json" in message
    assert str(tmp_path) in message and SOURCE.origin in message
