"""Generator backends by name: each builds its Generator from the settings; the base class counts tokens."""

import pytest

from ragtune.errors import ConfigError, ModelError
from ragtune.models.backends import load_generator
from ragtune.models.base import Generator


def test_load_generator_picks_backend_by_name(tiny_lm_dir):
    generator = load_generator(str(tiny_lm_dir), backend="transformers", max_new_tokens=3, repeat_ngram=4,
                               stop=["\n\n"])
    assert type(generator).__name__ == "TransformersGenerator" and generator.max_new_tokens == 3
    assert generator.repeat_ngram == 4 and generator.stop == ("\n\n",)  # the settings reach the shared loop
    endpoint = load_generator(None, backend="openai", base_url="http://127.0.0.1:9/v1", model="m", stop=["END"])
    assert type(endpoint).__name__ == "OpenAIChatGenerator" and endpoint.name == "m"
    assert endpoint._body([], None, None, stream=False)["stop"] == ["END"]
    with pytest.raises(ModelError, match="base_url"):
        load_generator(None, backend="openai")
    with pytest.raises(ConfigError, match="max_new_token"):
        load_generator("smollm2", max_new_token=3)  # a typo is named, not ignored


def test_a_backend_without_a_tokenizer_estimates_tokens_and_a_local_one_counts_them(tiny_lm_dir):
    class Echo(Generator):
        def stream(self, messages, *, max_new_tokens=None, temperature=None):
            yield messages[-1]["content"]

    echo = Echo()
    assert echo([{"role": "user", "content": "hi"}]) == "hi" and echo.count_tokens("x" * 40) == 11
    local = load_generator(str(tiny_lm_dir), backend="transformers", max_new_tokens=3)
    assert local.count_tokens("hello world") == len(local.tokenizer("hello world", add_special_tokens=False)["input_ids"])
