"""The Transformer translator: shapes, masks, causality, the KV cache against the full forward,
search, a tiny overfit, and train/run/eval/average/ensemble through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.decoding.search import beam_search, greedy_search
from seqlab.errors import UserError
from seqlab.translate.run import model_config_from_dict
from seqlab.translate.transformer import Transformer, TransformerConfig
from test_translate_train import write_corpus

PNG = b"\x89PNG\r\n\x1a\n"
V = 23


def tiny(dtype: torch.dtype = torch.float64, **kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, d_model=16, num_heads=4,
                            num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32,
                            dropout=0.0, **kw)
    return Transformer(cfg).to(dtype).eval()


def batch(B: int = 3, S: int = 7, T: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S] + [max(1, S - 2 * i) for i in range(1, B)])
    mask = torch.arange(S)[None] < lengths[:, None]                          # (B, S)
    src = torch.randint(4, V, (B, S), generator=g).masked_fill(~mask, 0)
    tgt = torch.randint(4, V, (B, T), generator=g)
    tgt[:, 0] = 2                                                            # BOS
    return src, lengths, mask, tgt


def test_shapes_and_per_layer_head_attention():
    m = tiny()
    src, lengths, mask, tgt = batch()
    logits, att = m(src, lengths, mask, tgt, return_attention=True)
    assert logits.shape == (3, 6, V)
    assert att is not None and att.shape == (3, 2, 4, 6, 7)                 # (B, L, h, T, S)
    torch.testing.assert_close(att.sum(-1), torch.ones(3, 2, 4, 6, dtype=att.dtype))


def test_padding_gets_zero_attention_and_does_not_matter():
    m = tiny()
    src, lengths, mask, tgt = batch()
    logits, att = m(src, lengths, mask, tgt, return_attention=True)
    pad = ~mask[:, None, None, None, :].expand_as(att)
    assert bool((att[pad] == 0).all())
    # other tokens at the padded positions: the same outputs
    src2 = src.masked_fill(~mask, 7)
    logits2, _ = m(src2, lengths, mask, tgt)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=1e-12)


def test_causal_output_at_t_ignores_later_tokens():
    m = tiny()
    src, lengths, mask, tgt = batch()
    logits, _ = m(src, lengths, mask, tgt)
    for t in range(tgt.size(1) - 1):
        other = tgt.clone()
        other[:, t + 1:] = (other[:, t + 1:] + 5) % (V - 4) + 4
        logits2, _ = m(src, lengths, mask, other)
        torch.testing.assert_close(logits2[:, :t + 1], logits[:, :t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(logits2[:, t + 1:], logits[:, t + 1:])


def test_incremental_kv_cache_equals_full_forward():
    m = tiny(positions="learned")
    src, lengths, mask, tgt = batch()
    logits, att = m(src, lengths, mask, tgt, return_attention=True)
    memory, state = m.encode(src, lengths, mask)
    steps, weights = [], []
    for t in range(tgt.size(1)):
        lp, state, w = m.decoder.step(tgt[:, t], state, memory)
        steps.append(lp)
        weights.append(w)
        assert state.keys[0].shape == (3, 4, t + 1, 4)                      # the cache grows
    torch.testing.assert_close(torch.stack(steps, 1), torch.log_softmax(logits, -1),
                               rtol=0, atol=1e-10)
    assert att is not None
    torch.testing.assert_close(torch.stack(weights, 1), att[:, -1].mean(1), rtol=0, atol=1e-10)


def test_reordered_cache_matches_reordered_batch():
    m = tiny()
    src, lengths, mask, tgt = batch()
    memory, state = m.encode(src, lengths, mask)
    for t in range(3):
        _, state, _ = m.decoder.step(tgt[:, t], state, memory)
    idx = torch.tensor([2, 0, 0])
    st = m.decoder.reorder_state(state, idx)
    mem = m.decoder.select_memory(memory, idx)
    lp, _, _ = m.decoder.step(tgt[idx, 3], st, mem)
    lp_ref, _, _ = m.decoder.step(tgt[:, 3], state, memory)
    torch.testing.assert_close(lp, lp_ref[idx], rtol=0, atol=1e-12)


def test_key_bias_gets_no_gradient():
    # softmax(q.k_j + q.b) over j ignores q.b: the key projection's bias cannot change the
    # output, so its gradient is zero (what tests/test_distributed.py relies on)
    m = tiny()
    src, lengths, mask, tgt = batch()
    loss, _ = m.loss(src, lengths, mask, tgt[:, :-1], tgt[:, 1:])
    loss.backward()
    biases = [mod.in_proj_bias for mod in m.modules() if getattr(mod, "in_proj_bias", None)
              is not None]
    assert len(biases) == 2 + 2 * 2          # encoder self, decoder self + cross, 2 layers each
    for b in biases:
        d = b.numel() // 3
        assert float(b.grad[d:2 * d].abs().max()) < 1e-12
        assert float(b.grad[:d].abs().max()) > 1e-6 and float(b.grad[2 * d:].abs().max()) > 1e-6


def test_beam_one_equals_greedy():
    m = tiny()
    src, lengths, mask, _ = batch(B=4, S=6)
    common = dict(bos_id=2, eos_id=3, max_len=9)
    memory, state = m.encode(src, lengths, mask)
    g = greedy_search(m.decoder, memory, state, **common)
    memory, state = m.encode(src, lengths, mask)
    b = beam_search(m.decoder, memory, state, num_beams=1, length_penalty=0.0, **common)
    assert [h.tokens for h in g.best()] == [h.tokens for h in b.best()]
    for hg, hb in zip(g.best(), b.best(), strict=True):
        assert hg.logprob == pytest.approx(hb.logprob, abs=1e-9)


@pytest.mark.cpu_sensitive
def test_tiny_model_overfits_a_few_pairs():
    m = tiny(torch.float32, positions="sinusoidal").train()
    src, lengths, mask, tgt_in = batch(B=4, S=6, T=5, seed=3)
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((4, 1), 3)], 1)          # shifted, EOS
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss, n = m.loss(src, lengths, mask, tgt_in, tgt_out)
        (loss / n).backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()) / n)
    assert losses[-1] < 0.25 * losses[0]
    res = m.eval().generate(src, lengths, mask, num_beams=3, max_new_tokens=8)
    learned = [h.tokens == t for h, t in zip(res.best(), tgt_out[:, :-1].tolist(), strict=True)]
    assert sum(learned) >= 3


def test_config_checks_and_arch_dispatch():
    with pytest.raises(UserError, match="d_model"):
        TransformerConfig(d_model=30, num_heads=4)
    with pytest.raises(UserError, match="share_embeddings"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=12)
    assert isinstance(model_config_from_dict({"arch": "transformer"}), TransformerConfig)
    lstm = model_config_from_dict({"embedding_dim": 16})      # old runs: no arch -> LSTM
    assert type(lstm).__name__ == "Seq2SeqConfig"
    with pytest.raises(UserError, match="arch"):
        model_config_from_dict({"arch": "gru"})
    shared = tiny(share_embeddings=True)
    assert shared.src_embed.token.weight is shared.decoder.embed.token.weight


def test_activation_dropout_acts_inside_the_feed_forward_block_only_in_training():
    with pytest.raises(UserError, match="activation_dropout"):
        TransformerConfig(activation_dropout=1.5)
    x = torch.randn(4, 5, 16, dtype=torch.float64)
    for p in (0.0, 0.5):
        model = tiny(activation_dropout=p)
        ff = model.encoder_layers[0].ff
        ff.train()
        same = torch.equal(ff(x), ff(x))
        assert same == (p == 0.0)        # p > 0: a new mask per call
        ff.eval()
        assert torch.equal(ff(x), ff(x))
        # the weights keep torch's Sequential names whatever p is: ff.0 and ff.3
        assert {k.split(".")[-2] for k in ff.state_dict()} == {"0", "3"}


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


TINY_MODEL = ("--arch", "transformer", "--d-model", "16", "--num-heads", "2",
              "--num-encoder-layers", "1", "--num-decoder-layers", "1", "--dim-feedforward", "32")
TINY = (*TINY_MODEL, "--vocab-size", "300", "--batch-tokens", "600", "--eval-sentences", "8",
        "--threads", "1", "--quiet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tr")
    corpus = write_corpus(d / "pairs.tsv")
    trans, lstm = d / "transformer", d / "lstm"
    r = invoke("translate", "train", "--corpus", str(corpus), "--out", str(trans), *TINY,
               "--max-steps", "12", "--eval-every", "4", "--keep-checkpoints", "2")
    assert r.exit_code == 0, r.output
    # an LSTM on the same corpus: the same tokenizer (trained the same way), for the ensemble
    r = invoke("translate", "train", "--corpus", str(corpus), "--out", str(lstm), "--hidden",
               "16", "--emb", "16", "--vocab-size", "300", "--batch-tokens", "600",
               "--max-steps", "4", "--eval-every", "4", "--eval-sentences", "8", "--threads",
               "1", "--quiet")
    assert r.exit_code == 0, r.output
    return trans, lstm


def test_cli_train_run_plot_eval(runs, tmp_path):
    trans, _ = runs
    cfg = json.loads((trans / "config.json").read_text())
    assert cfg["model"]["arch"] == "transformer" and cfg["model"]["share_embeddings"]
    assert len(list((trans / "snapshots").glob("*.safetensors"))) == 2
    plot = tmp_path / "att.png"
    r = invoke("translate", "run", str(trans), "I see two red cats .", "--num-beams", "2",
               "--attention-plot", str(plot), "--max-new-tokens", "6")
    assert r.exit_code == 0, r.output
    assert plot.read_bytes()[:8] == PNG
    assert (tmp_path / "att-layer1.png").read_bytes()[:8] == PNG
    r = invoke("translate", "eval", str(trans), "--json", "--limit", "4", "--num-beams", "1")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_sentences"] == 4


def test_gates_of_a_transformer_run_are_refused_in_one_line(runs):
    trans, _ = runs
    r = invoke("gates", "--model", str(trans), "--text", "I see one cat .")
    assert r.exit_code == 2 and "Transformer translator, which has no LSTM gates" in r.output
    assert "Traceback" not in r.output


def test_average_of_identical_snapshots_is_the_snapshot(runs, tmp_path):
    from seqlab.training.checkpoint import (
        average_snapshots,
        load_safetensors,
        snapshot_paths,
    )

    trans, _ = runs
    last = snapshot_paths(trans)[-1]
    same = average_snapshots([last, last, last])
    ref, _ = load_safetensors(last)
    assert set(same) == set(ref)
    for k in ref:
        torch.testing.assert_close(same[k], ref[k], rtol=0, atol=1e-7)
    two = average_snapshots(snapshot_paths(trans))
    a, _ = load_safetensors(snapshot_paths(trans)[0])
    for k in ref:
        torch.testing.assert_close(two[k], ((a[k].double() + ref[k].double()) / 2).float())
    out = tmp_path / "avg"
    r = invoke("translate", "average", str(trans), "--last", "2", "-o", str(out))
    assert r.exit_code == 0, r.output
    r = invoke("translate", "run", str(out), "I see two cats .", "--max-new-tokens", "5")
    assert r.exit_code == 0, r.output
    # --average at load time: the same translation as the averaged run directory
    r2 = invoke("translate", "run", str(trans), "I see two cats .", "--max-new-tokens", "5",
                "--average", "2")
    assert r2.exit_code == 0 and r2.stdout == r.stdout, r2.output
    r = invoke("translate", "average", str(trans), "--last", "3", "-o", str(tmp_path / "x"))
    assert r.exit_code == 2 and "2 weight snapshots, 3 asked for" in r.output


def test_ensemble_of_one_is_that_run_and_of_two_is_the_mean(runs):
    from seqlab.translate.api import Translator
    from seqlab.translate.ensemble import Ensemble

    trans, lstm = runs
    single = Translator.load(trans, device="cpu")
    sents = ["I see two red cats .", "I have one dog ."]
    one = Ensemble([single.model]).eval()
    assert Translator(one, single.tok, single.config).translate(sents, num_beams=2) == \
        single.translate(sents, num_beams=2)
    both = Translator.load(trans, device="cpu", ensemble=[lstm])
    a, b = both.model.models
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    lengths, mask = torch.tensor([4, 3]), src != 0
    memory, state = both.model.encode(src, lengths, mask)
    tokens = torch.tensor([2, 2])
    lp, _, _ = both.model.decoder.step(tokens, state, memory)
    with torch.no_grad():
        la = a.decoder.step(tokens, *reversed(a.encode(src, lengths, mask)))[0]
        lb = b.decoder.step(tokens, *reversed(b.encode(src, lengths, mask)))[0]
    torch.testing.assert_close(lp, (la + lb) / 2)
    assert len(both.translate(sents, num_beams=3)) == 2


def test_ensemble_output_stays_within_its_transformer_positions():
    from seqlab.translate.ensemble import Ensemble
    from seqlab.translate.model import Seq2Seq, Seq2SeqConfig

    trans = tiny(torch.float32, max_positions=12)
    torch.manual_seed(0)
    lstm = Seq2Seq(Seq2SeqConfig(src_vocab_size=V, tgt_vocab_size=V, embedding_dim=8,
                                 encoder_hidden_size=8, decoder_hidden_size=8,
                                 dropout=0.0)).eval()
    with torch.no_grad():
        lstm.decoder.out.bias[3] = -float("inf")   # EOS never wins: the search runs to its cap
    ens = Ensemble([lstm, trans]).eval()
    assert ens.max_target_positions == 12
    assert Ensemble([lstm]).max_target_positions is None
    src, lengths, mask, _ = batch(B=2, S=7)
    for beams in (1, 2):
        # asked for 40 (and by default 2 * 7 + 10): capped at the Transformer's 12 positions
        for limit in (40, None):
            out = ens.generate(src, lengths, mask, num_beams=beams, max_new_tokens=limit)
            assert max(len(h.tokens) for h in out.best()) == 12


def test_ensemble_needs_one_tokenizer(runs, tmp_path):
    trans, _ = runs
    corpus = write_corpus(tmp_path / "pairs.tsv")
    other = tmp_path / "other"
    r = invoke("translate", "train", "--corpus", str(corpus), "--out", str(other), *TINY_MODEL,
               "--vocab-size", "320", "--batch-tokens", "600", "--max-steps", "2",
               "--eval-every", "2", "--eval-sentences", "4", "--threads", "1", "--quiet")
    assert r.exit_code == 0, r.output
    r = invoke("translate", "run", str(trans), "I see .", "--ensemble", str(other))
    assert r.exit_code == 2 and "tokenizer differs" in r.output


def test_encoder_gates_are_the_lstm_encoders_own_states(runs):
    from seqlab.translate.api import Translator

    trans, lstm = runs
    tr = Translator.load(lstm, device="cpu")
    assert tr.has_gates
    text = "I see two red cats ."
    gates, pieces = tr.encoder_gates(text)
    ids = tr.tok.src.encode([text])[0] + [tr.tok.src.eos_id]
    assert pieces == tr.tok.src.encode_pieces([text])[0] + ["</s>"]
    with torch.no_grad():
        out, _ = tr.model.encoder(tr.model.src_embed(torch.tensor([ids])))  # (1, S, 2H)
    H = gates.h.shape[-1]
    assert gates.h.shape == (1, 2, 1, len(ids), H)
    # forward direction's h_t and backward direction's h_t are the encoder's two output halves
    torch.testing.assert_close(gates.h[0, 0, 0], out[0, :, :H], atol=1e-6, rtol=0)
    torch.testing.assert_close(gates.h[0, 1, 0], out[0, :, H:], atol=1e-6, rtol=0)
    cut, cut_pieces = tr.encoder_gates(text, max_steps=3)
    assert cut_pieces == pieces[:3] and cut.h.shape[-2] == 3    # no room left for the EOS
    torch.testing.assert_close(cut.h[0, 0, 0], gates.h[0, 0, 0, :3], atol=1e-6, rtol=0)
    transformer = Translator.load(trans, device="cpu")
    assert not transformer.has_gates
    with pytest.raises(TypeError, match="no LSTM gates"):
        transformer.encoder_gates(text)
    assert not Translator.load(lstm, device="cpu", ensemble=[trans]).has_gates
