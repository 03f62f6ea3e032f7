"""Python calls found in free text and matched as syntax trees (Gorilla's AST sub-tree rule), by hand."""

import ast

import pytest

from ragtune.evaluate.calls import (
    call_score,
    callee,
    calls_in,
    canonical_string,
    first_call,
    string_arguments,
)

TORCH = "torch.hub.load(repo_or_dir='pytorch/vision', model='resnet50', pretrained=True)"


@pytest.mark.parametrize("text,expected", [
    ("hub.load('x')", "hub.load('x')"),
    ("```python\nimport tensorflow_hub as hub\nmodel = hub.KerasLayer('u', trainable=False)\n```",
     "hub.KerasLayer('u', trainable=False)"),
    ("You can use hub.load('https://tfhub.dev/a/1') for this (it is fast).", "hub.load('https://tfhub.dev/a/1')"),
    ("<<<api_call>>>: hub.KerasLayer('u'), <<<api_provider>>>: TensorFlow Hub", "hub.KerasLayer('u')"),
    ("model = a.b.c(x, y=[1, 2])", "a.b.c(x, y=[1, 2])"),
    ("f(\n  'a',\n  b=')'\n)", "f('a', b=')')"),  # a call over lines, a ')' inside a string
    ("The model (MobileNet) is small; load(1)", "load(1)"),  # prose in parentheses is no call
    ("if (x) then broken(( and g(2)", "g(2)"),  # unparsable or unclosed spans are skipped
    ("a.b().c(x)", "a.b().c(x)"),  # a method chain stays one expression
    ("no call here", None),
    ("", None),
])
def test_first_call_found_in_text(text, expected):
    found = first_call(text)
    assert (ast.unparse(found) if found is not None else None) == expected


def test_calls_in_reading_order_outer_first():
    text = "tf.keras.Sequential([hub.KerasLayer('u')]) then f(g(1))"
    assert [callee(c) for c in calls_in(text)] == ["tf.keras.Sequential", "hub.KerasLayer", "f", "g"]


@pytest.mark.parametrize("prediction,gold,expected", [
    # keyword order is ignored
    ("torch.hub.load(model='resnet50', pretrained=True, repo_or_dir='pytorch/vision')", TORCH, 1.0),
    # positional in the prediction where the gold names the keyword, at the same place
    ("torch.hub.load('pytorch/vision', 'resnet50', pretrained=True)", TORCH, 1.0),
    # ... but not at another place
    ("torch.hub.load('resnet50', 'pytorch/vision', pretrained=True)", TORCH, 0.0),
    # a gold positional matched by the prediction's keyword at its place
    ("hub.load(handle='https://tfhub.dev/google/yamnet/1')", "hub.load('https://tfhub.dev/google/yamnet/1')", 1.0),
    # every gold argument must be there; extra prediction arguments are allowed (Gorilla)
    ("torch.hub.load('pytorch/vision', 'resnet50')", TORCH, 0.0),
    ("torch.hub.load('pytorch/vision', 'resnet50', pretrained=True, force_reload=False)", TORCH, 1.0),
    ("torch.hub.load(repo_or_dir='pytorch/vision', model='resnet50', pretrained=False)", TORCH, 0.0),
    ("torch.hub.load(repo_or_dir='pytorch/vision', model='resnet50', pretrained=1)", TORCH, 0.0),  # True is not 1
    # the callee's dotted name must be equal
    ("hub.load('pytorch/vision', 'resnet50', pretrained=True)", TORCH, 0.0),
    ("x = a.b.c(1, k=[2, 3])", "a.b.c(1, k=(2, 3))", 1.0),  # a list equals a tuple of the same items
    ("a.b.d(1)", "a.b.c(1)", 0.0),
    # nested calls compared by the same rule
    ("tf.keras.Sequential([hub.KerasLayer('https://tfhub.dev/m/4', trainable=False)])",
     "tf.keras.Sequential([hub.KerasLayer('https://tfhub.dev/m/4')])", 1.0),
    ("hub.KerasLayer('https://tfhub.dev/m/4')", "tf.keras.Sequential([hub.KerasLayer('https://tfhub.dev/m/4')])", 0.0),
    # a URL names the same resource without scheme, www. or trailing '/'; its path stays case-sensitive
    ("hub.load('tfhub.dev/google/yamnet/1/')", "hub.load('https://tfhub.dev/google/yamnet/1')", 1.0),
    ("hub.load('https://tfhub.dev/google/YAMNet/1')", "hub.load('https://tfhub.dev/google/yamnet/1')", 0.0),
    ("hub.load('https://tfhub.dev/google/yamnet/2')", "hub.load('https://tfhub.dev/google/yamnet/1')", 0.0),
    # only the first call to the gold's function counts: listing many is not rewarded
    ("hub.load('https://tfhub.dev/x/1') or hub.load('https://tfhub.dev/google/yamnet/1')",
     "hub.load('https://tfhub.dev/google/yamnet/1')", 0.0),
    # other calls before it do not hurt
    ("import x; print('hi'); m = hub.load('https://tfhub.dev/google/yamnet/1')",
     "hub.load('https://tfhub.dev/google/yamnet/1')", 1.0),
    ("I would use yamnet.", "hub.load('https://tfhub.dev/google/yamnet/1')", 0.0),  # no call found
    ("hub.load('x')", "not a call", 0.0),
    # an answer cut by the length cap: brackets are closed, a value cut off is not guessed
    ("model = hub.load('https://tfhub.dev/google/yamnet/1'", "hub.load('https://tfhub.dev/google/yamnet/1')", 1.0),
    ("tf.keras.Sequential([hub.KerasLayer('https://tfhub.dev/m/4'", "tf.keras.Sequential([hub.KerasLayer("
     "'https://tfhub.dev/m/4')])", 1.0),
    ("hub.load('https://tfhub.dev/google/yamnet/1", "hub.load('https://tfhub.dev/google/yamnet/1')", 0.0),
    ("hub.KerasLayer('https://tfhub.dev/m/4',", "hub.KerasLayer('https://tfhub.dev/m/4', trainable=False)", 0.0),
    ("f(**opts)", "f(**opts)", 1.0),
])
def test_call_score_by_hand(prediction, gold, expected):
    assert call_score(prediction, gold) == expected


def test_canonical_string_only_touches_urls():
    assert canonical_string("https://www.Kaggle.com/models/a/B/") == "kaggle.com/models/a/B"
    assert canonical_string("tfhub.dev/google/yamnet/1") == "tfhub.dev/google/yamnet/1"
    assert canonical_string("https://example.org/m?format=x") == "example.org/m?format=x"  # a query is kept
    for plain in ("pytorch/vision", "model.pt", " resnet50 ", "gs://bucket/m"):
        assert canonical_string(plain) == plain.strip()


def test_string_arguments_and_an_unclosed_call():
    assert string_arguments(first_call(TORCH)) == ["pytorch/vision", "resnet50"]
    assert string_arguments(first_call("tf.keras.Sequential([hub.KerasLayer('https://tfhub.dev/m/4/')])")) == \
        ["tfhub.dev/m/4"]
    assert callee(first_call("model = hub.load('https://tfhub.dev/m/4'")) == "hub.load"  # cut short: completed
    assert callee(first_call("model = hub.load('https://tfhub.dev/m/4') and more")) == "hub.load"
    assert first_call("Sure, here is") is None


def test_hostile_text_is_bounded():
    assert first_call("f(" * 5000) is None  # unclosed: no hang, no recursion error
    assert first_call("(" * 300 + "f(1)" + ")" * 300) is not None
    assert first_call("x" * 100_000 + " g(1)") is not None


# Gold calls as the benchmarks publish them: a bare name is a placeholder the question leaves open
TORCH_HUB = ("torch.hub.load(repo_or_dir='NVIDIA/DeepLearningExamples:torchhub', model='nvidia_efficientnet_b0', "
             "pretrained=True, model_type=model_type, precision=precision)")
TF_HUB = ("hub.KerasLayer('https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/4', "
          "input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), trainable=False)")


@pytest.mark.parametrize("gold,prediction,expected", [
    # Torch Hub: the right repository and model with pretrained=True scores, the placeholders left out
    (TORCH_HUB, "torch.hub.load('NVIDIA/DeepLearningExamples:torchhub', 'nvidia_efficientnet_b0', pretrained=True)",
     1.0),
    (TORCH_HUB, "m = torch.hub.load(repo_or_dir='NVIDIA/DeepLearningExamples:torchhub', model='nvidia_efficientnet_b0',"
                " pretrained=True, model_type='efficientnet-b0', precision='fp32')", 1.0),  # any value fills one
    (TORCH_HUB, "torch.hub.load('NVIDIA/DeepLearningExamples:torchhub', 'nvidia_efficientnet_b4', pretrained=True)",
     0.0),  # another model
    (TORCH_HUB, "torch.hub.load('NVIDIA/DeepLearningExamples:torchhub', 'nvidia_efficientnet_b0')", 0.0),  # a literal
    # TF Hub: the placeholder inside a tuple matches any element; the literal 3 and the URL must match
    (TF_HUB, "hub.KerasLayer('https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/4', "
             "input_shape=(224, 224, 3), trainable=False)", 1.0),
    (TF_HUB, "hub.KerasLayer('https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/4', "
             "input_shape=(224, 224, 1), trainable=False)", 0.0),
    (TF_HUB, "hub.KerasLayer('https://tfhub.dev/google/imagenet/mobilenet_v2_130_224/feature_vector/4', "
             "input_shape=(224, 224, 3), trainable=False)", 0.0),
    ("hub.load(model_handle)", "hub.load('https://tfhub.dev/google/yamnet/1')", 1.0),  # only placeholders: the callee
    ("hub.load(model_handle)", "tf.saved_model.load('https://tfhub.dev/google/yamnet/1')", 0.0),
])
def test_bare_names_in_gold_calls_are_placeholders(gold, prediction, expected):
    assert call_score(gold, gold) == 1.0  # the gold self-check still passes
    assert call_score(prediction, gold) == expected
