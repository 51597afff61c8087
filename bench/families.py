"""Step time of every model family at one small size: catches a pathologically slow family.

Each family gets a randomly initialised transformers model of the same shape (hidden 256, 4
layers, 4 heads, MLP 1024, vocabulary 30,522; DistilBERT/GPT-2/Llama/Phi-3/ModernBERT/DeBERTa/
Gemma/T5 spell these their own way; the gated MLPs are 2/3 as wide; ALBERT runs one shared
block in every layer, from 128-wide embeddings), saved with ``save_pretrained`` and loaded by
jaxtl and by transformers. The full train step (sequence classification head on the first token, AdamW) is
timed alternately in both, on one fixed batch without padding. Parameter counts differ a little
by family (position tables, relative embeddings, GQA, gated MLPs), so the table reports them
beside the times.
"""

from __future__ import annotations

import gc
import tempfile
from typing import Any

from bench.common import Settings, alternate

SHAPE = dict(hidden=256, layers=4, heads=4, mlp=1024, vocab=30522, positions=512)


def hf_configs(shape: dict[str, int] = SHAPE) -> dict[str, Any]:
    """model_type -> a transformers config of ``shape``."""
    import transformers as tr

    h, n, a, f, v, p = (
        shape[k] for k in ("hidden", "layers", "heads", "mlp", "vocab", "positions")
    )
    bert = dict(vocab_size=v, hidden_size=h, num_hidden_layers=n, num_attention_heads=a,
                intermediate_size=f, max_position_embeddings=p)  # fmt: skip
    return {
        "bert": tr.BertConfig(**bert),
        "roberta": tr.RobertaConfig(**{**bert, "max_position_embeddings": p + 2}),
        "electra": tr.ElectraConfig(**bert, embedding_size=h),
        "mpnet": tr.MPNetConfig(**{**bert, "max_position_embeddings": p + 2}),
        "distilbert": tr.DistilBertConfig(vocab_size=v, dim=h, n_layers=n, n_heads=a,
                                          hidden_dim=f, max_position_embeddings=p),
        "gpt2": tr.GPT2Config(vocab_size=v, n_embd=h, n_layer=n, n_head=a, n_inner=f,
                              n_positions=p),
        "deberta-v2": tr.DebertaV2Config(**bert, relative_attention=True,
                                         pos_att_type=["p2c", "c2p"], position_buckets=256,
                                         max_relative_positions=-1, norm_rel_ebd="layer_norm",
                                         share_att_key=True, position_biased_input=False,
                                         type_vocab_size=0),
        # deberta-base's layout: c2p and p2c through unshared projections, a fused in_proj
        "deberta": tr.DebertaConfig(**bert, relative_attention=True, pos_att_type="c2p|p2c",
                                    max_relative_positions=-1, position_biased_input=False,
                                    type_vocab_size=0),
        "modernbert": tr.ModernBertConfig(vocab_size=v, hidden_size=h, num_hidden_layers=n,
                                          num_attention_heads=a, intermediate_size=f * 2 // 3,
                                          max_position_embeddings=p, global_attn_every_n_layers=2,
                                          local_attention=64, pad_token_id=0, cls_token_id=101,
                                          sep_token_id=102, bos_token_id=101,
                                          eos_token_id=102),
        "llama": tr.LlamaConfig(vocab_size=v, hidden_size=h, num_hidden_layers=n,
                                num_attention_heads=a, num_key_value_heads=a // 2,
                                intermediate_size=f * 2 // 3, max_position_embeddings=p),
        # Phi-3-mini's layout (fused qkv_proj / gate_up_proj), grouped-query as Phi-3-medium
        "phi3": tr.Phi3Config(vocab_size=v, hidden_size=h, num_hidden_layers=n,
                              num_attention_heads=a, num_key_value_heads=a // 2,
                              intermediate_size=f * 2 // 3, max_position_embeddings=p,
                              pad_token_id=0),
        # Gemma 2/3 at 64-token windows on alternate layers (Gemma 2; Gemma 3 five in six)
        "gemma2": tr.Gemma2Config(vocab_size=v, hidden_size=h, num_hidden_layers=n,
                                  num_attention_heads=a, num_key_value_heads=a // 2,
                                  head_dim=h // a, intermediate_size=f * 2 // 3,
                                  max_position_embeddings=p, sliding_window=64,
                                  query_pre_attn_scalar=h // a),
        "gemma3_text": tr.Gemma3TextConfig(vocab_size=v, hidden_size=h, num_hidden_layers=n,
                                           num_attention_heads=a, num_key_value_heads=a // 2,
                                           head_dim=h // a, intermediate_size=f * 2 // 3,
                                           max_position_embeddings=p, sliding_window=64,
                                           query_pre_attn_scalar=h // a),
        # albert-base-v2's layout: 128-wide embeddings, one block run by every layer
        "albert": tr.AlbertConfig(**bert, embedding_size=128, hidden_act="gelu_new"),
        "t5": tr.T5Config(vocab_size=v, d_model=h, d_kv=h // a, d_ff=f * 2 // 3, num_layers=n,
                          num_heads=a, feed_forward_proj="gated-gelu"),
    }  # fmt: skip


def case_families(
    s: Settings, shape: dict[str, int] = SHAPE, only: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Per family (``only`` those, if given): jaxtl and PyTorch full-step medians (alternated),
    their ratio, params."""
    import torch
    import transformers as tr

    from bench import jaxtl_side as J
    from bench import torch_side as T
    from jaxtl.models.registry import FAMILIES

    rows = []
    t = max(s.seq_lens)
    batch = J.random_batch(shape["vocab"], s.batch_size, t, s.seed)
    for model_type, cfg in hf_configs(shape).items():
        if model_type not in FAMILIES or (only and model_type not in only):
            continue
        with tempfile.TemporaryDirectory() as d:
            torch.manual_seed(s.seed)
            # T5's AutoModel is the whole seq2seq model; its encoder is what both sides train
            model_cls = tr.T5EncoderModel if model_type == "t5" else tr.AutoModel.from_config
            model_cls(cfg).save_pretrained(d)
            fs = Settings(**{**s.to_json(), "model": d, "seq_lens": (t,)})
            model, _ = J.build_model(fs, "full", tokenizer=False)
            params = J.params_of(model)
            jx = J.train_setup(fs, "full", batch, model=model)
            tx = T.train_setup(fs, "full", params, batch)
            for _ in range(s.warmup):
                jx.run()
                tx.run()
            timing = alternate(jx.run, tx.run, s.pairs)
            rows.append({"family": model_type, "seq_len": t, "batch_size": s.batch_size,
                         "params": jx.trainable_params, "jaxtl_compile_s": jx.compile_s,
                         **timing})  # fmt: skip
            print(f"  family {model_type}: jaxtl {timing['jaxtl_median_s']:.3f}s "
                  f"torch {timing['torch_median_s']:.3f}s ratio {timing['ratio_median']:.2f}",
                  flush=True)  # fmt: skip
            del jx, tx, model
            gc.collect()
    bert = next((r for r in rows if r["family"] == "bert"), None)
    for r in rows:
        r["vs_bert"] = r["jaxtl_median_s"] / bert["jaxtl_median_s"] if bert else float("nan")
    return {"rows": rows, "shape": shape}


def render_families(res: dict[str, Any]) -> list[str]:
    rows = res["rows"]
    if not rows:
        return ["(not run)"]
    r0 = rows[0]
    out = [
        f"Batch {r0['batch_size']}, T={r0['seq_len']}, no padding; shape {res['shape']}. "
        "Full train step (AdamW), median of the alternated pairs.",
        "",
        "| family | params | jaxtl step (s) | PyTorch step (s) | jaxtl / PyTorch | jaxtl vs BERT |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| {r['family']} | {r['params'] / 1e6:.2f} M | {r['jaxtl_median_s']:.3f} | "
                   f"{r['torch_median_s']:.3f} | {r['ratio_median']:.2f} | {r['vs_bert']:.2f} |")  # fmt: skip
    return out
