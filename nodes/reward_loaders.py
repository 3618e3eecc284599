"""Reward loader nodes: the paper's rewards, held-out scorers and their combination.

Every node outputs a PSI_REWARD (`rewards.base.Reward`). Model files come from
the `psi_rewards` model folder (see `reward_models` and docs/model_folders.md);
nothing is downloaded. Targets (boxes, counts, prompts) and folder choices are
checked in `validate_inputs`, so a bad target is a node error when the prompt is
queued, before any model is loaded or any sampling starts.

Target formats (typed into STRING widgets; a frontend box editor edits `boxes`):

    boxes   [{"phrase": "a cat", "box": [x0, y0, x1, y1]}, ...]
            xyxy, origin top-left, y downwards; normalised to [0, 1] of the image's
            width and height (units "normalized") or in pixels of width x height
            (units "pixels"). Phrases may repeat (one box each); other keys are ignored.
    counts  [{"object": "apple", "count": 5}, ...]   whole numbers >= 0, distinct objects
"""

from __future__ import annotations

import json
from typing import Any

from comfy_api.latest import io

from ..comfy_host import t2icount as host_t2icount
from ..comfy_host.clip_vision import host_clip_vision
from ..psi_core.validation import prompt_text
from ..rewards.aesthetic import CLIP_L14_SOURCE, HEAD_FILE, HEAD_SOURCE, AestheticHead, AestheticReward
from ..rewards.combine import WeightedSum
from ..rewards.grounding import GROUNDING_DINO_SOURCE
from ..rewards.grounding_py import (BERT_SOURCE, GROUNDINGDINO_PY_SOURCE, OFFICIAL_QUERIES,
                                    check_groundingdino_py_usable, groundingdino_py_usable, min_shortest_side)
from ..rewards.heldout import (HPSV2_SOURCE, OPEN_CLIP_HINT, PICKSCORE_PROCESSOR_SOURCE, PICKSCORE_SOURCE, load_hpsv2,
                               pickscore_reward)
from ..rewards.image_reward import IMAGE_REWARD_SOURCE, load_image_reward
from ..rewards.layout import MATCHINGS, LayoutReward
from ..rewards.loading import RewardUnavailableError
from ..rewards.quantity import T2ICOUNT_FILE, T2ICOUNT_SOURCE, QuantityReward
from ..rewards.targets import CountTarget, LayoutTarget, parse_json_target
from . import reward_models as models
from .declared import check_execution_inputs, model_choice, validate
from .types import PsiReward

CATEGORY = "sampling/psi"
NO_CLIP_FOLDER = "none (use clip_vision)"
SAME_AS_MODEL = "same as model_folder"
UNITS = ("normalized", "pixels")
T2ICOUNT = "t2icount"
GDINO_PY = "groundingdino-py"
#: every backend a prompt may name; the combos offer groundingdino-py only where it can run
QUANTITY_BACKENDS = ("grounding_dino", T2ICOUNT, GDINO_PY)
DETECTOR_BACKENDS = ("transformers", GDINO_PY)
GDINO_PY_FILE = "groundingdino_swint_ogc.pth"
DETECTOR_SIZE_MIN = 64
#: CLIP ViT-L/14 projected embedding width the aesthetic head reads (768)
AESTHETIC_EMBED_WIDTH = AestheticHead.expected_shapes()["layers.0.weight"][1]

BOXES_DEFAULT = ('[{"phrase": "a cat", "box": [0.05, 0.35, 0.48, 0.95]},\n'
                 ' {"phrase": "a dog", "box": [0.52, 0.3, 0.95, 0.95]}]')
COUNTS_DEFAULT = '[{"object": "apple", "count": 5}]'
BOXES_TOOLTIP = (
    'Target boxes as JSON: [{"phrase": "a cat", "box": [x0, y0, x1, y1]}, ...], one entry per object. '
    "x0 < x1 and y0 < y1, origin top-left, y downwards; with units normalized the numbers are fractions "
    "(0–1) of the image width and height, with units pixels they are pixels of width × height. A phrase may "
    "repeat (one box each) and must not contain '.'; other keys are ignored.")
COUNTS_TOOLTIP = (
    'Target counts as JSON: [{"object": "apple", "count": 5}, {"object": "pear", "count": 2}]: distinct object '
    "phrases (no '.') and whole-number counts >= 0.")
REWARD_OUTPUT_TOOLTIP = "The reward, for the Ψ samplers' reward input (and Ψ Score Images / Ψ Combine Rewards)."


def reward_output() -> io.Output:
    return PsiReward.Output("reward", display_name="reward", tooltip=REWARD_OUTPUT_TOOLTIP)


def folder_input(name: str, choices: list[str], tooltip: str, extra: tuple[str, ...] = (),
                 preferred: str | None = None, optional: bool = False) -> io.Input:
    options = list(choices) + list(extra) if choices or extra else [models.NOTHING_FOUND]
    return model_choice(io.Combo.Input(name, options=options, default=models.default_choice(options, preferred),
                                       optional=optional, tooltip=tooltip))


def prompt_input() -> io.Input:
    return io.String.Input("prompt", multiline=True, default="",
                           tooltip="The generation prompt the scorer compares the image with.")


def detector_size_input() -> io.Input:
    return io.Int.Input("detector_size", default=0, min=0, max=4096, step=8,
                        tooltip="Shortest side in pixels that images are resized to for Grounding DINO (0 = the "
                                f"folder's setting, 800; at least {DETECTOR_SIZE_MIN}). The paper's code used 512×512 "
                                "images as they were; smaller is faster.")


def dino_folder_input() -> io.Input:
    return folder_input(
        "grounding_dino_folder", models.folder_choices(models.GROUNDING_DINO_TYPES),
        f"Grounding DINO in transformers format: a sub-folder of models/{models.FOLDER} with config.json "
        "(model_type grounding-dino), model.safetensors and tokenizer files, e.g. "
        "IDEA-Research/grounding-dino-base. Shared by layout and quantity rewards on the same folder.",
        preferred="grounding-dino-base")


def check_detector(folder: str, detector_size: int) -> None:
    """The detector settings shared by the layout and quantity rewards (cheap: no loading)."""
    if detector_size and detector_size < DETECTOR_SIZE_MIN:
        raise ValueError(f"detector_size must be 0 (the folder's setting) or >= {DETECTOR_SIZE_MIN}; "
                         f"got {detector_size}")
    models.check_folder(folder, GROUNDING_DINO_SOURCE, need=models.GROUNDING_DINO_FILES)


def offered(backends: tuple[str, ...]) -> list[str]:
    """The backends a combo offers: groundingdino-py only where it is installed and can run
    (transformers < 5). Saved prompts naming it still reach `check_groundingdino_py`, which
    says why it cannot run here."""
    return [b for b in backends if b != GDINO_PY or groundingdino_py_usable()]


def gdino_py_inputs() -> list[io.Input]:
    """The optional inputs of the groundingdino-py detector backend (layout and quantity)."""
    return [
        folder_input("groundingdino_checkpoint", models.file_choices(),
                     f"groundingdino-py backend: {GDINO_PY_FILE} (Swin-T OGC, from the IDEA-Research/GroundingDINO "
                     f"release) in models/{models.FOLDER}. Needs the optional groundingdino-py package and "
                     "transformers < 5.",
                     preferred=GDINO_PY_FILE, optional=True),
        folder_input("groundingdino_bert_folder", models.folder_choices(models.BERT_TYPES),
                     f"groundingdino-py backend: a transformers folder of bert-base-uncased in models/{models.FOLDER} "
                     "(config.json, model.safetensors, vocab.txt), read locally, never downloaded.",
                     preferred="bert-base-uncased", optional=True),
    ]


def check_groundingdino_py(checkpoint: str | None, bert_folder: str | None, detector_size: int) -> None:
    """The groundingdino-py backend can run here and its files exist (cheap: no loading)."""
    try:
        check_groundingdino_py_usable(f"checkpoint {checkpoint}")
    except RewardUnavailableError as err:
        raise ValueError(str(err)) from err
    least = min_shortest_side(OFFICIAL_QUERIES)
    if detector_size and detector_size < least:
        raise ValueError(f"detector_size must be 0 (800) or >= {least} for the groundingdino-py backend; "
                         f"got {detector_size}")
    models.resolve_file(checkpoint, GROUNDINGDINO_PY_SOURCE)
    models.resolve_folder(bert_folder, BERT_SOURCE)


def phrase_detector(use_gdino_py: bool, grounding_dino_folder: str, detector_size: int,
                    checkpoint: str | None, bert_folder: str | None):
    """The layout/quantity detector of either backend, checked first, loaded once per files and size."""
    if use_gdino_py:
        check_groundingdino_py(checkpoint, bert_folder, detector_size)
        return models.groundingdino_py(checkpoint, bert_folder, detector_size)
    check_detector(grounding_dino_folder, detector_size)
    return models.grounding_dino(grounding_dino_folder, detector_size)


def parse_boxes(text: Any) -> tuple[list[str], list[list[float]]]:
    """The `boxes` widget -> (phrases, boxes); ValueError naming the bad entry."""
    example = '[{"phrase": "a cat", "box": [0.1, 0.2, 0.6, 0.9]}]'
    phrases, boxes = [], []
    for i, entry in enumerate(parse_json_target("boxes", text, example)):
        if not isinstance(entry, dict) or "phrase" not in entry or "box" not in entry:
            raise ValueError(f"boxes entry {i} must be an object with \"phrase\" and \"box\" (e.g. {example}); "
                             f"got {json.dumps(entry)[:80]}")
        box = entry["box"]
        if not isinstance(box, list) or len(box) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise ValueError(f"boxes entry {i} ({entry['phrase']!r}): box must be four numbers [x0, y0, x1, y1]; "
                             f"got {json.dumps(box)[:80]}")
        phrases.append(entry["phrase"])
        boxes.append([float(v) for v in box])
    return phrases, boxes


def layout_target(boxes: str, units: str, width: int, height: int) -> LayoutTarget:
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}; got {units!r}")
    phrases, rows = parse_boxes(boxes)
    return LayoutTarget.build(phrases, rows, units, (width, height))


#: largest target count: far more objects than a detector finds in one image
MAX_COUNT = 10_000


def parse_counts(text: Any) -> tuple[list[str], list[int]]:
    """The `counts` widget -> (objects, counts); ValueError naming the bad entry."""
    example = '[{"object": "apple", "count": 5}]'
    objects, counts = [], []
    for i, entry in enumerate(parse_json_target("counts", text, example)):
        if not isinstance(entry, dict) or "object" not in entry or "count" not in entry:
            raise ValueError(f"counts entry {i} must be an object with \"object\" and \"count\" (e.g. {example}); "
                             f"got {json.dumps(entry)[:80]}")
        count = entry["count"]
        if (isinstance(count, bool) or not isinstance(count, (int, float)) or not 0 <= count <= MAX_COUNT
                or count != int(count)):
            raise ValueError(f"counts entry {i} ({entry['object']!r}): count must be a whole number >= 0 and "
                             f"<= {MAX_COUNT}; got {json.dumps(count)[:40]}")
        objects.append(entry["object"])
        counts.append(int(count))
    return objects, counts


def count_target(counts: str) -> CountTarget:
    objects, values = parse_counts(counts)
    return CountTarget.build(objects, values)


def _processor(processor_folder: str) -> str | None:
    return None if processor_folder == SAME_AS_MODEL else processor_folder


# --------------------------------------------------------------------------- aesthetic


class PsiAestheticReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiAestheticReward",
            display_name="Ψ Aesthetic Reward",
            category=CATEGORY,
            description=(
                "The paper's aesthetic reward: the LAION improved aesthetic predictor (an MLP head on CLIP "
                "ViT-L/14 image embeddings), about 1 (poor) to 10 (excellent). Differentiable. CLIP comes from a "
                f"transformers folder in models/{models.FOLDER}, or from a Load CLIP Vision node."),
            inputs=[
                folder_input("head", models.file_choices(),
                             f"The aesthetic head weights in models/{models.FOLDER}: {HEAD_FILE} (LAION "
                             "improved-aesthetic-predictor).", preferred=HEAD_FILE),
                folder_input("clip_folder", models.folder_choices(models.CLIP_TYPES),
                             f"CLIP ViT-L/14 in transformers format (a sub-folder of models/{models.FOLDER} with "
                             "config.json and model.safetensors, e.g. openai/clip-vit-large-patch14). Ignored "
                             "when clip_vision is connected.", extra=(NO_CLIP_FOLDER,),
                             preferred="clip-vit-large-patch14"),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional: a CLIP ViT-L/14 from Load CLIP Vision, used instead of "
                                            "clip_folder (scored with this pack's differentiable preprocessing)."),
            ],
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        def check():
            models.resolve_file(values["head"], HEAD_SOURCE)
            if values["clip_folder"] != NO_CLIP_FOLDER:
                models.check_folder(values["clip_folder"], CLIP_L14_SOURCE)

        return validate(cls, values, check, needs=("head", "clip_folder"))

    @classmethod
    def fingerprint_inputs(cls, head, clip_folder, **kwargs):
        return models.fingerprint(folders=[clip_folder], files=[head])

    @classmethod
    def execute(cls, head, clip_folder, clip_vision=None) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        head_module = models.aesthetic_head(head)
        if clip_vision is not None:
            vision, size, mean, std = host_clip_vision(clip_vision, AESTHETIC_EMBED_WIDTH)
            reward = models.outside_inference(lambda: AestheticReward(vision, head_module, (), size, mean, std))
            return io.NodeOutput(reward)
        if clip_folder == NO_CLIP_FOLDER:
            raise ValueError(CLIP_L14_SOURCE.message(
                "clip_folder is 'none' and no clip_vision is connected: choose a CLIP folder or connect Load "
                "CLIP Vision", models.describe_roots()))
        vision = models.clip_vision_embedder(clip_folder)
        size = models.clip_input_size(vision)
        return io.NodeOutput(models.outside_inference(lambda: AestheticReward(vision, head_module, image_size=size)))


# --------------------------------------------------------------------------- layout and quantity


class PsiLayoutReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiLayoutReward",
            display_name="Ψ Layout Reward",
            category=CATEGORY,
            description=(
                "The paper's layout reward: Grounding DINO finds each phrase and the reward is the mean IoU "
                "(0–1) between the found boxes and the target boxes. Differentiable with soft matching."),
            inputs=[
                dino_folder_input(),
                io.String.Input("boxes", multiline=True, default=BOXES_DEFAULT, tooltip=BOXES_TOOLTIP),
                io.Combo.Input("units", options=list(UNITS), default="normalized",
                               tooltip="normalized: box numbers are fractions of width/height (0–1); pixels: "
                                       "they are pixels of an image of width × height."),
                io.Int.Input("width", default=512, min=1, max=16384, step=8,
                             tooltip="Image width the pixel boxes refer to (units pixels only)."),
                io.Int.Input("height", default=512, min=1, max=16384, step=8,
                             tooltip="Image height the pixel boxes refer to (units pixels only)."),
                io.Combo.Input("matching", options=list(MATCHINGS), default="soft",
                               tooltip="soft: each target takes a confidence- and overlap-weighted mix of "
                                       "detections (keeps a gradient); greedy: the paper's hard choice of one "
                                       "detection per target (gradient through box coordinates only)."),
                detector_size_input(),
                # added after the first release: optional and last, so saved workflows keep their widget order
                io.Combo.Input("detector_backend", options=offered(DETECTOR_BACKENDS), default=DETECTOR_BACKENDS[0],
                               optional=True,
                               tooltip="transformers: Grounding DINO from grounding_dino_folder. groundingdino-py "
                                       "(offered only where the optional package is installed with transformers "
                                       "< 5): the original package with groundingdino_swint_ogc.pth."),
                *gdino_py_inputs(),
            ],
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return validate(cls, values, lambda: cls.check_options(**values))

    @staticmethod
    def check_options(grounding_dino_folder=None, boxes=None, units=None, width=None, height=None,
                      detector_size=None, detector_backend=DETECTOR_BACKENDS[0], groundingdino_checkpoint=None,
                      groundingdino_bert_folder=None, **_):
        """The cross-input checks (a None value: a link, known at execution only, skips them)."""
        use_gdino_py = detector_backend == GDINO_PY

        def check():
            layout_target(boxes, units, width, height)
            if detector_backend not in DETECTOR_BACKENDS:
                raise ValueError(f"detector_backend must be one of {DETECTOR_BACKENDS}; got {detector_backend!r}")
            if use_gdino_py:
                check_groundingdino_py(groundingdino_checkpoint, groundingdino_bert_folder, detector_size)
            else:
                check_detector(grounding_dino_folder, detector_size)

        detector = () if use_gdino_py else (grounding_dino_folder,)
        if all(v is not None for v in (*detector, boxes, units, width, height, detector_size)):
            check()

    @classmethod
    def fingerprint_inputs(cls, grounding_dino_folder, groundingdino_checkpoint=None, groundingdino_bert_folder=None,
                           **kwargs):
        return models.fingerprint(folders=[f for f in (grounding_dino_folder, groundingdino_bert_folder) if f],
                                  files=[groundingdino_checkpoint] if groundingdino_checkpoint else [])

    @classmethod
    def execute(cls, grounding_dino_folder, boxes, units, width, height, matching, detector_size,
                detector_backend=DETECTOR_BACKENDS[0], groundingdino_checkpoint=None,
                groundingdino_bert_folder=None) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        layout_target(boxes, units, width, height)  # targets first: no model is loaded for a bad one
        detector = phrase_detector(detector_backend == GDINO_PY, grounding_dino_folder, detector_size,
                                   groundingdino_checkpoint, groundingdino_bert_folder)
        # the target's tensors take part in gradient passes: made outside inference mode
        reward = models.outside_inference(
            lambda: LayoutReward(detector, layout_target(boxes, units, width, height), matching))
        return io.NodeOutput(reward)


class PsiQuantityReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiQuantityReward",
            display_name="Ψ Quantity Reward",
            category=CATEGORY,
            description=(
                "Object-count reward −Σ SmoothL1(count − target) (0 when every count is right). Counts come from a "
                "differentiable soft count of Grounding DINO detections per object (backend grounding_dino), or from "
                "the paper's T2ICount counter (backend t2icount: its checkpoint plus the VAE and CLIP of an SD1.5 "
                "checkpoint)."),
            inputs=[
                dino_folder_input(),
                io.String.Input("counts", multiline=True, default=COUNTS_DEFAULT, tooltip=COUNTS_TOOLTIP),
                io.Float.Input("box_threshold", default=0.35, min=0.01, max=0.99, step=0.01,
                               tooltip="Detection probability above which a query counts as one object "
                                       "(Grounding DINO's usual box threshold; grounding_dino backend)."),
                io.Float.Input("temperature", default=0.1, min=0.001, max=10.0, step=0.01, round=False,
                               tooltip="Softness of the count in logit units: smaller is closer to a hard count, "
                                       "larger gives smoother gradients (grounding_dino backend)."),
                detector_size_input(),
                # added after the first release: optional and last, so saved workflows keep their widget order
                io.Combo.Input("backend", options=offered(QUANTITY_BACKENDS), default=QUANTITY_BACKENDS[0], optional=True,
                               tooltip="grounding_dino: soft count of Grounding DINO detections (grounding_dino_folder). "
                                       "t2icount: the paper's counter, T2ICount (t2icount_checkpoint, with vae and "
                                       "clip from an SD1.5 checkpoint); images are resized to 384×384. "
                                       "groundingdino-py: the soft count with the original Grounding DINO package "
                                       "(groundingdino_checkpoint, groundingdino_bert_folder; offered only where "
                                       "the optional package is installed with transformers < 5)."),
                folder_input("t2icount_checkpoint", models.file_choices(),
                             f"T2ICount weights in models/{models.FOLDER} (t2icount backend): {T2ICOUNT_FILE} from "
                             "the T2ICount authors (github.com/cha15yq/T2ICount), which holds the fine-tuned SD1.5 "
                             "UNet and the counting head.", preferred=T2ICOUNT_FILE, optional=True),
                io.Vae.Input("vae", optional=True,
                             tooltip="t2icount backend: the Stable Diffusion 1.5 VAE (e.g. the VAE output of Load "
                                     "Checkpoint with v1-5-pruned-emaonly); T2ICount encodes images with it."),
                io.Clip.Input("clip", optional=True,
                              tooltip="t2icount backend: the Stable Diffusion 1.5 CLIP text encoder (e.g. the CLIP "
                                      "output of Load Checkpoint); its last layer encodes each object phrase."),
                *gdino_py_inputs(),
            ],
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return validate(cls, values, lambda: cls.check_options(**values))

    @staticmethod
    def check_options(grounding_dino_folder=None, counts=None, detector_size=None, backend=QUANTITY_BACKENDS[0],
                      t2icount_checkpoint=None, groundingdino_checkpoint=None, groundingdino_bert_folder=None, **_):
        """The cross-input checks (a None value: a link, known at execution only, skips them)."""
        def check():
            count_target(counts)
            if backend not in QUANTITY_BACKENDS:
                raise ValueError(f"backend must be one of {QUANTITY_BACKENDS}; got {backend!r}")
            if backend == T2ICOUNT:
                models.resolve_file(t2icount_checkpoint, T2ICOUNT_SOURCE)
            elif backend == GDINO_PY:
                check_groundingdino_py(groundingdino_checkpoint, groundingdino_bert_folder, detector_size)
            else:
                check_detector(grounding_dino_folder, detector_size)

        # a None value skips the check (a linked input); an absent checkpoint is an error of its own
        values = {T2ICOUNT: (counts, backend), GDINO_PY: (counts, backend, detector_size)}.get(
            backend, (grounding_dino_folder, counts, detector_size))
        if all(v is not None for v in values):
            check()

    @classmethod
    def fingerprint_inputs(cls, grounding_dino_folder, t2icount_checkpoint=None, groundingdino_checkpoint=None,
                           groundingdino_bert_folder=None, **kwargs):
        files = [f for f in (t2icount_checkpoint, groundingdino_checkpoint) if f]
        return models.fingerprint(folders=[f for f in (grounding_dino_folder, groundingdino_bert_folder) if f],
                                  files=files)

    @classmethod
    def execute(cls, grounding_dino_folder, counts, box_threshold, temperature, detector_size,
                backend=QUANTITY_BACKENDS[0], t2icount_checkpoint=None, vae=None, clip=None,
                groundingdino_checkpoint=None, groundingdino_bert_folder=None) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        count_target(counts)  # targets first: no model is loaded for a bad one
        if backend == T2ICOUNT:
            if vae is None or clip is None:
                raise ValueError("backend t2icount needs the Stable Diffusion 1.5 VAE and CLIP: connect the vae and "
                                 "clip inputs (e.g. from Load Checkpoint with an SD1.5 checkpoint); missing: "
                                 + " and ".join(n for n, v in (("vae", vae), ("clip", clip)) if v is None))
            host_t2icount.check_vae(vae)
            unet, head = models.t2icount(t2icount_checkpoint)
            return io.NodeOutput(host_t2icount.t2icount_reward(unet, head, vae, clip, *parse_counts(counts)))
        if backend not in QUANTITY_BACKENDS:
            raise ValueError(f"backend must be one of {QUANTITY_BACKENDS}; got {backend!r}")
        detector = phrase_detector(backend == GDINO_PY, grounding_dino_folder, detector_size,
                                   groundingdino_checkpoint, groundingdino_bert_folder)
        reward = models.outside_inference(
            lambda: QuantityReward(detector, count_target(counts), box_threshold, temperature))
        return io.NodeOutput(reward)


# --------------------------------------------------------------------------- held-out scorers


class PsiPickScoreReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        clip_folders = models.folder_choices(("clip",))
        return io.Schema(
            node_id="PsiPickScoreReward",
            display_name="Ψ PickScore Reward",
            category=CATEGORY,
            description=(
                "PickScore (held-out human-preference scorer): logit scale × cosine between the image and the "
                "prompt with the PickScore CLIP ViT-H/14. Differentiable; used to judge results, or as a reward."),
            inputs=[
                folder_input("model_folder", clip_folders,
                             f"PickScore in transformers format: a sub-folder of models/{models.FOLDER} with "
                             "config.json (model_type clip) and model.safetensors (yuvalkirstain/PickScore_v1).",
                             preferred="PickScore_v1"),
                folder_input("processor_folder", models.folder_choices(tokenizer=True),
                             "Folder with the tokenizer (and preprocessor_config.json) of "
                             "laion/CLIP-ViT-H-14-laion2B-s32B-b79K, or the model folder itself where it has them.",
                             extra=(SAME_AS_MODEL,), preferred="CLIP-ViT-H-14-laion2B-s32B-b79K"),
                prompt_input(),
            ],
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        model_folder, processor_folder, prompt = (values.get(n) for n in ("model_folder", "processor_folder", "prompt"))

        def check():
            prompt_text(prompt)
            models.check_folder(model_folder, PICKSCORE_SOURCE)
            name = _processor(processor_folder) or model_folder
            folder = models.scan().folders.get(name)
            if folder is None or not folder.has_tokenizer():
                raise ValueError(PICKSCORE_PROCESSOR_SOURCE.message(
                    f"no tokenizer files in {name!r}", models.describe_roots()))

        return validate(cls, values, check, needs=("model_folder", "processor_folder", "prompt"))

    @classmethod
    def fingerprint_inputs(cls, model_folder, processor_folder, **kwargs):
        return models.fingerprint(folders=[model_folder, processor_folder])

    @classmethod
    def execute(cls, model_folder, processor_folder, prompt) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        clip = models.clip_with_tokenizer(model_folder, _processor(processor_folder))
        reward = models.outside_inference(lambda: pickscore_reward(
            clip.model, clip.tokenizer, prompt, clip.image_size, clip.mean, clip.std))
        return io.NodeOutput(reward)


HPSV2_PACKAGE = ("open_clip", OPEN_CLIP_HINT, "The HPSv2 scorer")


def check_package(package: tuple[str, str, str]) -> None:
    message = models.missing_package(*package)
    if message:
        raise ValueError(message)


class PsiHPSv2Reward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiHPSv2Reward",
            display_name="Ψ HPSv2 Reward",
            category=CATEGORY,
            description=(
                "HPS v2 (held-out human-preference scorer): cosine between image and prompt with the HPS v2 "
                "open_clip ViT-H/14. Needs the optional package open_clip_torch (not installed by this pack)."),
            inputs=[
                folder_input("checkpoint", models.file_choices(),
                             f"HPS v2 weights in models/{models.FOLDER}: HPS_v2.1_compressed.pt (xswu/HPSv2).",
                             preferred="HPS_v2.1_compressed.pt"),
                prompt_input(),
            ],
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        checkpoint, prompt = values.get("checkpoint"), values.get("prompt")

        def check():
            check_package(HPSV2_PACKAGE)
            prompt_text(prompt)
            models.resolve_file(checkpoint, HPSV2_SOURCE)

        return validate(cls, values, check, needs=("checkpoint", "prompt"))

    @classmethod
    def fingerprint_inputs(cls, checkpoint, **kwargs):
        return models.fingerprint(files=[checkpoint])

    @classmethod
    def execute(cls, checkpoint, prompt) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        check_package(HPSV2_PACKAGE)
        path = models.resolve_file(checkpoint, HPSV2_SOURCE)
        reward = models.CACHE.get(("hpsv2", models.signature(path), prompt), lambda: models.outside_inference(
            lambda: load_hpsv2(path, prompt)))
        return io.NodeOutput(reward)


class PsiImageRewardReward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiImageRewardReward",
            display_name="Ψ ImageReward Reward",
            category=CATEGORY,
            description=(
                "ImageReward (held-out human-preference scorer, BLIP + MLP), differentiable through this pack's "
                "own preprocessing; built on the host's transformers BLIP classes (no extra package). Needs "
                "vocab.txt of bert-base-uncased next to med_config.json."),
            inputs=[
                folder_input("checkpoint", models.file_choices(),
                             f"ImageReward weights in models/{models.FOLDER}: ImageReward.pt (THUDM/ImageReward).",
                             preferred="ImageReward.pt"),
                folder_input("med_config", models.file_choices((".json",)),
                             "The BLIP text-encoder config med_config.json from THUDM/ImageReward.",
                             preferred="med_config.json"),
                prompt_input(),
            ],
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        checkpoint, med_config, prompt = (values.get(n) for n in ("checkpoint", "med_config", "prompt"))

        def check():
            prompt_text(prompt)
            models.resolve_file(checkpoint, IMAGE_REWARD_SOURCE)
            models.resolve_file(med_config, IMAGE_REWARD_SOURCE)

        return validate(cls, values, check, needs=("checkpoint", "med_config", "prompt"))

    @classmethod
    def fingerprint_inputs(cls, checkpoint, med_config, **kwargs):
        return models.fingerprint(files=[checkpoint, med_config])

    @classmethod
    def execute(cls, checkpoint, med_config, prompt) -> io.NodeOutput:
        check_execution_inputs(cls, locals())
        path = models.resolve_file(checkpoint, IMAGE_REWARD_SOURCE)
        config = models.resolve_file(med_config, IMAGE_REWARD_SOURCE)
        key = ("imagereward", models.signature(path), models.signature(config), prompt)
        reward = models.CACHE.get(key, lambda: models.outside_inference(
            lambda: load_image_reward(path, config, prompt)))
        return io.NodeOutput(reward)


# --------------------------------------------------------------------------- combination

MAX_PARTS = 4
REQUIRED_PARTS = 2


def _combine_inputs() -> list[io.Input]:
    inputs: list[io.Input] = []
    for i in range(1, MAX_PARTS + 1):
        optional = i > REQUIRED_PARTS
        inputs.append(PsiReward.Input(f"reward_{i}", optional=optional,
                                      tooltip=f"Reward {i}{' (optional)' if optional else ''}."))
        inputs.append(io.Float.Input(f"weight_{i}", default=1.0, min=-1e4, max=1e4, step=0.01, round=False,
                                     tooltip=f"Weight of reward {i} (negative turns it into a penalty; ignored "
                                             "when the reward is not connected)."))
    return inputs


class PsiCombineRewards(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PsiCombineRewards",
            display_name="Ψ Combine Rewards",
            category=CATEGORY,
            description=("A weighted sum Σ wᵢ·rewardᵢ of two to four rewards (differentiable only if every part is). "
                         "Mind the scales: aesthetic ~1–10, layout IoU 0–1, quantity ≤ 0."),
            inputs=_combine_inputs(),
            outputs=[reward_output()],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return validate(cls, values)

    @classmethod
    def execute(cls, reward_1, weight_1, reward_2, weight_2, reward_3=None, weight_3=1.0, reward_4=None,
                weight_4=1.0) -> io.NodeOutput:
        check_execution_inputs(cls, locals())  # weights by their input names, before WeightedSum numbers the parts
        pairs = [(reward_1, weight_1), (reward_2, weight_2), (reward_3, weight_3), (reward_4, weight_4)]
        parts = [(r, w) for r, w in pairs if r is not None]
        return io.NodeOutput(WeightedSum([r for r, _ in parts], [w for _, w in parts]))


NODES = [PsiAestheticReward, PsiLayoutReward, PsiQuantityReward, PsiPickScoreReward, PsiHPSv2Reward,
         PsiImageRewardReward, PsiCombineRewards]
