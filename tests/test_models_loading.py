"""Loading models from every accepted spec, and refusing what must not be loaded."""

from __future__ import annotations

import json
import shutil

import pytest

from ragtune.errors import ModelError
from ragtune.models.backends import load_generator
from ragtune.models.loading import FALLBACK_CHAT_TEMPLATE, load_model_and_tokenizer, resolve_model


def test_hf_folder_loads_with_its_chat_template(tiny_lm_dir):
    source = resolve_model(str(tiny_lm_dir))
    assert source.kind == "hf" and source.path == tiny_lm_dir.resolve()
    model, tokenizer = load_model_and_tokenizer(str(tiny_lm_dir))
    assert model.config.num_hidden_layers == 2 and not model.training
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|assistant|>\n")


def test_folder_with_only_pickled_weights_is_refused(tiny_lm_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_lm_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="pickled"):
        resolve_model(str(folder))


@pytest.mark.parametrize("make", ["missing", "empty-folder", "text-file", "bad-alias"])
def test_bad_specs_raise_one_line_model_error(tmp_path, make):
    spec = {"missing": str(tmp_path / "nope"), "empty-folder": str(tmp_path), "bad-alias": "smollm9"}.get(make)
    if make == "text-file":
        spec = str(tmp_path / "weights.txt")
        (tmp_path / "weights.txt").write_text("not a model")
    with pytest.raises(ModelError) as info:
        load_model_and_tokenizer(spec)
    assert "\n" not in str(info.value) and spec in str(info.value)


def test_model_without_chat_template_gets_the_fallback(tiny_lm_dir, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_lm_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    _, tokenizer = load_model_and_tokenizer(str(folder))
    assert tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "User: hi\n\nAssistant:"


def test_peft_adapter_loads_its_base_through_the_resolver(tiny_lm_dir, tmp_path):
    peft = pytest.importorskip("peft")
    import torch

    base, _ = load_model_and_tokenizer(str(tiny_lm_dir))
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_lm_dir)
    source = resolve_model(str(tmp_path / "adapter"))
    assert source.kind == "peft" and source.base == str(tiny_lm_dir)

    model, _ = load_model_and_tokenizer(str(tmp_path / "adapter"))
    ids = torch.tensor([[5, 6, 7, 8]])
    plain, _ = load_model_and_tokenizer(str(tiny_lm_dir))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, lora(ids).logits, atol=1e-5)
        assert not torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-5)  # the adapter is applied


def test_adapter_trained_on_an_adapter_loads_both(tiny_lm_dir, tmp_path):
    """RAFT trained from the fine-tuned model: its adapter's base is the fine-tuned adapter folder, and loading it
    applies both, in order (the first merged into the weights the second was trained on)."""
    peft = pytest.importorskip("peft")
    import torch

    def adapter(base, seed: int):
        torch.manual_seed(seed)
        return peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False))

    first = adapter(load_model_and_tokenizer(str(tiny_lm_dir))[0], 1)
    first.save_pretrained(tmp_path / "ft")
    second = adapter(first.merge_and_unload(), 2)
    second.save_pretrained(tmp_path / "raft")
    config_path = tmp_path / "raft" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "base_model_name_or_path": str(tmp_path / "ft")}))

    model, _ = load_model_and_tokenizer(str(tmp_path / "raft"))
    only_first, _ = load_model_and_tokenizer(str(tmp_path / "ft"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, second(ids).logits, atol=1e-5)
        assert not torch.allclose(model(ids).logits, only_first(ids).logits, atol=1e-5)


@pytest.mark.integration
def test_packaged_smollm2_converts_once_then_loads_from_cache():
    from ragtune.models.loading import cache_root, cached_gguf_conversion

    source = resolve_model("smollm2")
    assert source.kind == "gguf" and source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = cached_gguf_conversion(source)  # converts on a fresh machine, else reuses the cache
    assert folder.parent == cache_root() and (folder / "model.safetensors").is_file()
    assert cached_gguf_conversion(source) == folder
    model, tokenizer = load_model_and_tokenizer("smollm2")
    assert model.config.model_type == "llama" and "<|im_start|>" in tokenizer.chat_template


def test_gemma_tokenizer_without_template_gets_gemma_turns(tiny_gemma_dir):
    from ragtune.models.loading import GEMMA_CHAT_TEMPLATE, turn_end_id
    from ragtune.models.prompts import rag_messages
    from ragtune.types import Hit

    model, tokenizer = load_model_and_tokenizer(str(tiny_gemma_dir))
    assert tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    messages = rag_messages("Who founded it?", [Hit("Maren Oakhurst founded it in 1961.", "a.txt", 1.0)])
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # the system rules open the first user turn; the prompt ends where the model's turn begins
    assert text.startswith("[CLS]<start_of_turn>user\n" + messages[0]["content"] + "\n\n")
    assert text.endswith("Question: Who founded it?<end_of_turn>\n<start_of_turn>model\n")
    assert "User:" not in text and "Assistant:" not in text
    generator = load_generator(str(tiny_gemma_dir), backend="transformers", max_new_tokens=4)
    end = turn_end_id(tokenizer)
    assert end == tokenizer.convert_tokens_to_ids("<end_of_turn>") and end in generator.eos_ids
    ids = generator.prompt_ids(messages)
    assert ids[0] == tokenizer.cls_token_id and ids.count(end) == 1  # markers are single tokens, not text


def test_a_tokenizer_without_turn_markers_keeps_the_fallback_and_no_extra_stop(tiny_lm_dir):
    from ragtune.models.loading import turn_end_id

    generator = load_generator(str(tiny_lm_dir), backend="transformers", max_new_tokens=4)
    assert turn_end_id(generator.tokenizer) is None
    assert generator.eos_ids == {generator.tokenizer.eos_token_id}
