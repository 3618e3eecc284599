"""Targets are validated when built, with messages naming the value and what is allowed."""

import math

import pytest
import torch

from psi_sampler.rewards.targets import CountTarget, LayoutTarget


def test_layout_target_normalises_pixels():
    target = LayoutTarget.build(["Cat", "horse."], [[0, 0, 256, 128], [256, 256, 512, 512]], image_size=(512, 512))
    assert target.phrases == ("cat", "horse")
    torch.testing.assert_close(target.boxes, torch.tensor([[0, 0, 0.5, 0.25], [0.5, 0.5, 1, 1]]))


def test_layout_target_from_paper_record_and_duplicates():
    record = {"phrases": ["cat", "cat", "dog"], "bboxes": [[0, 0, 100, 100], [200, 200, 300, 300], [1, 1, 50, 60]]}
    target = LayoutTarget.from_record(record)
    assert target.unique_phrases == ("cat", "dog")
    assert target.phrase_index.tolist() == [0, 0, 1]
    assert target.boxes.max() <= 1.0


@pytest.mark.parametrize(
    "phrases, boxes, kwargs, pattern",
    [
        (["cat"], [[0.1, 0.1, 1.2, 0.5]], {"units": "normalized"}, "outside the image"),
        (["cat"], [[10, 10, 600, 100]], {"image_size": (512, 512)}, "outside the image.*512"),
        (["cat"], [[-5, 10, 100, 100]], {"image_size": (512, 512)}, "outside the image"),
        (["cat"], [[10, 10, 100, 100]], {}, "no image_size"),
        (["  "], [[0.1, 0.1, 0.2, 0.2]], {}, "phrase 0 is empty"),
        ([""], [[0.1, 0.1, 0.2, 0.2]], {}, "empty"),
        (["cat", "dog"], [[0.1, 0.1, 0.2, 0.2]], {}, "2 phrases but 1 boxes"),
        (["cat"], [[0.1, 0.1, 0.2]], {}, r"must be \[x1, y1, x2, y2\]"),
        (["cat"], [[0.1, float("nan"), 0.2, 0.3]], {}, r"box 0 \('cat'\) coordinate must be a finite number; got nan"),
        (["cat"], [[0.1, 0.1, math.inf, 0.3]], {}, "must be a finite number; got inf"),
        (["cat"], [[0.3, 0.1, 0.2, 0.4]], {}, "x1 < x2"),
        (["a. b"], [[0.1, 0.1, 0.2, 0.2]], {}, "contains '.'"),
        ([], [], {}, "non-empty list"),
        (["cat"], [[0.1, 0.1, 0.2, 0.2]], {"units": "inches"}, "units must be one of"),
        (["cat"], [[1, 1, 20, 20]], {"image_size": (0, 10)}, "positive"),
    ],
)
def test_bad_layout_targets(phrases, boxes, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        LayoutTarget.build(phrases, boxes, **kwargs)


def test_count_target():
    target = CountTarget.from_record({"items": [{"prompt": "Eggs", "count": 17}, {"prompt": "cat", "count": 0}]})
    assert target.objects == ("eggs", "cat")
    assert target.counts.tolist() == [17.0, 0.0]


@pytest.mark.parametrize(
    "objects, counts, error, pattern",
    [
        (["eggs"], [-1], ValueError, "count 0 .*'eggs'.* must be a finite number >= 0; got -1"),
        (["eggs"], [float("nan")], ValueError, "must be a finite number >= 0; got nan"),
        (["eggs"], ["many"], TypeError, "count 0 .*'eggs'.* must be a number; got 'many'"),
        (["eggs", "eggs"], [1, 2], ValueError, "distinct"),
        (["eggs"], [1, 2], ValueError, "one count per object"),
        ([""], [1], ValueError, "empty"),
        ("eggs", [1], ValueError, "non-empty list"),
    ],
)
def test_bad_count_targets(objects, counts, error, pattern):
    with pytest.raises(error, match=pattern):
        CountTarget.build(objects, counts)


# --------------------------------------------------------------------------- JSON targets within limits

from psi_sampler.rewards.targets import MAX_JSON_CHARS, MAX_JSON_DEPTH, parse_json_target  # noqa: E402

EXAMPLE = '[{"object": "apple", "count": 5}]'


@pytest.mark.parametrize("text, message", [
    ('[{"count": NaN}]', r"^counts holds NaN, which is not a finite number"),
    ('[{"count": -Infinity}]', r"^counts holds -Infinity, which is not a finite number"),
    ('[{"count": 1e400}]', r"^counts holds the number 1e400, which is not finite"),
    ("[" * 10_000, rf"^counts is nested 10000 levels deep; at most {MAX_JSON_DEPTH}"),
    ("{" * 50 + "}" * 50, rf"^counts is nested 50 levels deep; at most {MAX_JSON_DEPTH}"),
    ("x" * (MAX_JSON_CHARS + 1), rf"^counts is {MAX_JSON_CHARS + 1} characters long; at most {MAX_JSON_CHARS}"),
    ('[{"count": 5}', r"^counts is not valid JSON"),
    ("[]", r"^counts must be a non-empty JSON list"),
    ('{"count": 5}', r"^counts must be a non-empty JSON list"),
])
def test_json_target_refused_with_its_name(text, message):
    with pytest.raises(ValueError, match=message):
        parse_json_target("counts", text, EXAMPLE)


def test_json_target_brackets_inside_strings_do_not_count_as_nesting():
    text = '[{"object": "a [[[[[[ \\" {{{{{{ b", "count": 2.0}]'
    assert parse_json_target("counts", text, EXAMPLE) == [{"object": 'a [[[[[[ " {{{{{{ b', "count": 2.0}]


def test_json_target_at_the_limits_is_accepted():
    nested = "[" * MAX_JSON_DEPTH + "1" + "]" * MAX_JSON_DEPTH
    assert parse_json_target("boxes", nested, EXAMPLE)
    entry = '{"object": "x", "count": 1}, '
    long = "[" + entry * ((MAX_JSON_CHARS - 40) // len(entry)) + '{"object": "y", "count": 1}]'
    assert len(long) <= MAX_JSON_CHARS and len(parse_json_target("counts", long, EXAMPLE)) > 500


def test_json_target_not_a_string():
    with pytest.raises(ValueError, match=r"^counts must be a JSON string"):
        parse_json_target("counts", 5, EXAMPLE)
