"""Generator backends by name, as metrics are: `load_generator` builds the one the settings name.

    generate = load_generator("smollm2")                          # "auto": the compiled engine on CPU
    generate = load_generator(settings.generator, model="runs/ft")  # any field of [generator] overridden

"auto" runs a local model on the compiled engine (models/ort.py) on CPU when it is installed, else on
transformers; "onnxruntime-genai" and "transformers" name one; "openai" is any OpenAI-compatible endpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ragtune.config import GeneratorSettings, Settings, describe_error
from ragtune.errors import ConfigError, ModelError
from ragtune.models import ort
from ragtune.models.base import Generator
from ragtune.models.loading import display_name, load_model_and_tokenizer, resolve_device, resolve_model

log = logging.getLogger(__name__)


def openai_endpoint(settings: GeneratorSettings) -> Generator:
    from ragtune.models.generators import OpenAIChatGenerator

    if not settings.base_url:
        raise ModelError("generator.backend is 'openai' but generator.base_url is not set; "
                         "set it, e.g. RAGTUNE_GENERATOR__BASE_URL=http://localhost:11434/v1")
    return OpenAIChatGenerator(settings.base_url, settings.model, api_key=os.environ.get(settings.api_key_env),
                               max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                               stop=settings.stop, retries=settings.retries)


def transformers_model(settings: GeneratorSettings) -> Generator:
    from ragtune.models.generators import TransformersGenerator

    device = resolve_device(settings.device)
    model, tokenizer = load_model_and_tokenizer(settings.model, device=device, dtype=settings.dtype)
    if hasattr(model, "merge_and_unload"):  # a LoRA adapter: fold it into the weights for faster inference
        model = model.merge_and_unload()
    return TransformersGenerator(model, tokenizer, name=display_name(settings.model),
                                 max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                 optimize=settings.optimize, static_cache=settings.static_cache,
                                 repeat_ngram=settings.repeat_ngram, stop=settings.stop)


def compiled_engine(settings: GeneratorSettings) -> Generator:
    """The compiled engine; without its package installed, transformers runs the model (with a warning)."""
    if not ort.available():
        log.warning("generator.backend '%s': %s is not installed, so transformers runs the model (slower); "
                    "pip install 'ragtune[engine]'", settings.backend, ort.ENGINE)
        return transformers_model(settings)
    resolve_model(settings.model)  # a bad spec is reported once, not as an engine failure
    return ort.load_ort_generator(settings)


def automatic(settings: GeneratorSettings) -> Generator:
    """The compiled engine on CPU, transformers elsewhere or for a model the engine cannot compile."""
    if resolve_device(settings.device) != "cpu":
        return transformers_model(settings)
    try:
        return compiled_engine(settings)
    except ModelError as e:
        log.warning("%s; transformers runs it instead", e)  # e.g. an architecture the engine lacks
        return transformers_model(settings)


BACKENDS: dict[str, Callable[[GeneratorSettings], Generator]] = {
    "auto": automatic, ort.ENGINE: compiled_engine, "transformers": transformers_model, "openai": openai_endpoint,
}


def load_generator(settings: GeneratorSettings | Settings | str | None = None, **overrides: Any) -> Generator:
    """A Generator by backend name (``generator.backend``, see `BACKENDS`).

    ``settings`` may be the generator settings, the whole Settings, a model spec string or None (defaults);
    keyword overrides set fields of GeneratorSettings, e.g. ``load_generator("smollm2", max_new_tokens=64)``.
    """
    if isinstance(settings, Settings):
        settings = settings.generator
    if isinstance(settings, str):
        settings = GeneratorSettings(model=settings)
    try:
        settings = GeneratorSettings.model_validate({**(settings or GeneratorSettings()).model_dump(), **overrides})
    except ValidationError as e:
        raise ConfigError(describe_error(e, "generator.")) from None
    return BACKENDS[settings.backend](settings)
