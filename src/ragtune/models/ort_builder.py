"""The engine's model builder, run as a child process (``python -m ragtune.models.ort_builder ARGS``), with one fix.

onnxruntime-genai 0.18's builder reads a Gemma 3 config in the layout of transformers 4 (``rope_theta``,
``rope_local_base_freq``); transformers 5 gives ``rope_parameters`` per layer type instead
(``{"full_attention": {...}, "sliding_attention": {...}}``), and the builder stops with ``KeyError: 'rope_type'``.
`flatten_rope` puts the transformers 4 names back before the builder reads them; every other model is untouched.
"""

from __future__ import annotations

import runpy
from typing import Any


def flatten_rope(config: Any) -> None:
    """Gemma 3's per-layer-type RoPE parameters as the builder expects them (global theta, local theta)."""
    params = getattr(config, "rope_parameters", None)
    if not (isinstance(params, dict) and "rope_type" not in params
            and {"full_attention", "sliding_attention"} <= set(params)):
        return
    config.rope_local_base_freq = params["sliding_attention"]["rope_theta"]
    config.rope_theta = params["full_attention"]["rope_theta"]
    config.rope_parameters = dict(params["full_attention"])


def main() -> None:
    import onnxruntime_genai.models  # noqa: F401  (puts its folder on sys.path: the builder imports `builders`)
    from builders import base  # the module object the builder's classes come from

    make_config_init = base.Model.make_config_init

    def patched(self: Any, config: Any) -> None:
        flatten_rope(config)
        make_config_init(self, config)

    base.Model.make_config_init = patched
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
