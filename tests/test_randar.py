"""Integration tests of arclf.randar: official-layout checkpoints, bad input, the KV cache,
raster mode."""

import json, math
from pathlib import Path
import pytest
import torch
from safetensors.torch import save_file
from arclf.core import (
    create_model,
    layout,
    layout_diff,
    random_state_dict,
    save_pretrained,
    load_pretrained,
)
from arclf.randar import RandAR, RandARConfig, randar_l, randar_fmnist, random_orders, raster_orders

torch.set_num_threads(1)
LAYOUT = Path(__file__).parent / 'layouts' / 'randar_l_keys.json'
TINY = dict(vocab_size=13, num_classes=4, grid=(3, 5), dim=32, n_layer=2, n_head=2, multiple_of=16)


def official_layout():
    return json.loads(LAYOUT.read_text())


def randomized(m, seed=0):
    """Random weights everywhere (the output layer is zero at init, which would make every test
    trivially uniform)."""
    sd = random_state_dict(layout(m), torch.Generator().manual_seed(seed))
    sd = {
        k: (
            v * 25
            if k == 'output.weight'
            else (torch.ones_like(v) if k.endswith('norm.weight') else v)
        )
        for k, v in sd.items()
    }
    m.load_state_dict(sd)
    return m.eval()


def test_randar_l_layout_matches_official():
    with torch.device('meta'):
        m = create_model('randar_l')
        direct = randar_l()  # the builder still builds the same model
    assert layout_diff(official_layout(), layout(m)) == ''
    assert list(layout(m)) == list(
        official_layout()
    )  # same keys, same order: no RoPE tables, no caches
    assert layout(direct) == layout(m) and m.cfg == direct.cfg


@pytest.mark.parametrize('fmt', ['safetensors', 'pt'])
def test_official_randar_l_checkpoint_loads_strictly(tmp_path, fmt):
    sd = random_state_dict(
        official_layout(), torch.Generator().manual_seed(0), dtype=torch.bfloat16
    )
    p = tmp_path / f'randar_l.{fmt}'
    if fmt == 'safetensors':
        save_file(sd, str(p))
    else:
        torch.save({'model': sd, 'steps': 360000}, p)  # a training-style .pt that wraps the weights
    m = create_model('randar_l', pretrained=p)
    for k in ('pos_instruct_embeddings', 'layers.23.feed_forward.w2.weight', 'output.weight'):
        assert torch.equal(m.state_dict()[k], sd[k].float())
    assert not m.training


def test_wrong_layout_fails_naming_keys(tmp_path):
    sd = random_state_dict(official_layout(), dtype=torch.bfloat16)
    del sd['layers.3.attention.wo.weight']
    sd['layers.3.attention.wo.bias'] = torch.zeros(1024)
    torch.save(sd, tmp_path / 'bad.pt')
    with pytest.raises(
        ValueError,
        match=r'missing key\(s\): layers\.3\.attention\.wo\.weight.*'
        r'unexpected key\(s\): layers\.3\.attention\.wo\.bias',
    ):
        create_model('randar_l', pretrained=tmp_path / 'bad.pt')
    torch.save(sd | {'layers.3.attention.wo.weight': torch.zeros(1024, 1024)}, tmp_path / 'l.pt')
    with pytest.raises(ValueError, match='wrong shape'):
        create_model('randar_xl', pretrained=tmp_path / 'l.pt')
    with pytest.raises(ValueError, match="unknown model 'randar_xxl'"):
        create_model('randar_xxl', pretrained=tmp_path / 'l.pt')


def test_kv_cache_matches_teacher_forcing_float64():
    m = randomized(RandAR(**TINY)).double()
    g = torch.Generator().manual_seed(1)
    cond = torch.tensor([0, 1, 2, 3, 4])  # 4 = the null class
    order = random_orders(5, 15, g)
    tokens, lp_steps = m.generate(cond, order, generator=g, return_logprobs=True)
    assert lp_steps.dtype == torch.float64
    torch.testing.assert_close(m.token_logprobs(tokens, cond, order), lp_steps, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        m.log_likelihood(tokens, cond, order), lp_steps.sum(-1), rtol=0, atol=1e-10
    )
    # the log-probs are far from uniform, so the comparison is not vacuous
    assert (lp_steps + math.log(13)).abs().max() > 0.5


def test_raster_mode_equals_random_mode_with_identity():
    m = randomized(RandAR(**TINY))
    r = RandAR(**TINY, order='raster').eval()
    r.load_state_dict(m.state_dict())
    g = torch.Generator().manual_seed(2)
    x, c = torch.randint(0, 13, (6, 15), generator=g), torch.randint(0, 4, (6,), generator=g)
    ident = raster_orders(6, 15)
    with torch.no_grad():
        torch.testing.assert_close(r(x, c), m(x, c, ident), rtol=0, atol=0)
        torch.testing.assert_close(
            r.loss((x, c)),
            torch.nn.functional.cross_entropy(m(x, c, ident).flatten(0, 1), x.flatten()),
        )
        assert not torch.allclose(m(x, c, random_orders(6, 15, g)), m(x, c, ident))
    torch.testing.assert_close(
        r.generate(c, generator=torch.Generator().manual_seed(3)),
        m.generate(c, ident, generator=torch.Generator().manual_seed(3)),
    )


def test_logits_are_causal_in_the_order():
    m = randomized(RandAR(**TINY))
    g = torch.Generator().manual_seed(4)
    x, c, o = (
        torch.randint(0, 13, (3, 15), generator=g),
        torch.tensor([0, 1, 2]),
        random_orders(3, 15, g),
    )
    k = 6
    x2 = x.clone()
    x2.scatter_(1, o[:, k:], (x.gather(1, o[:, k:]) + 1) % 13)
    with torch.no_grad():
        a, b = m(x, c, o), m(x2, c, o)
    torch.testing.assert_close(a[:, : k + 1], b[:, : k + 1])
    assert not torch.allclose(a[:, k + 1 :], b[:, k + 1 :])


@pytest.mark.parametrize(
    'bad, match',
    [
        (lambda x, c, o: (x.float(), c, o), 'integer token ids'),
        (lambda x, c, o: (x + 13, c, o), r'ids must lie in \[0, 12\]'),
        (lambda x, c, o: (x[:, :14], c, o[:, :14]), '3x5 grid'),
        (lambda x, c, o: (x, c + 4, o), 'labels must lie'),
        (lambda x, c, o: (x, c[:, None], o), r'class labels \[B\]'),
        (lambda x, c, o: (x, c, o.flip(0)[:, :1].expand(-1, 15)), 'permutation'),
    ],
)
def test_bad_input_is_named(bad, match):
    m = RandAR(**TINY)
    x, c, o = (
        torch.randint(0, 13, (2, 15)),
        torch.tensor([0, 3]),
        random_orders(2, 15, torch.Generator().manual_seed(0)),
    )
    with pytest.raises((ValueError, TypeError), match=match):
        m(*bad(x, c, o))


def test_save_pretrained_roundtrip(tmp_path):
    m = randomized(randar_fmnist(vocab_size=64, order='raster'))
    save_pretrained(m, tmp_path / 'r.pt', tokenizer='vq_fmnist_s')
    x, c = torch.randint(0, 64, (2, 49)), torch.tensor([1, 2])
    for m2 in (
        load_pretrained(RandAR, tmp_path / 'r.pt'),
        create_model('randar_fmnist', pretrained=tmp_path / 'r.pt'),
    ):
        assert (
            m2.cfg == m.cfg and m2.cfg.order == 'raster' and m2.meta == {'tokenizer': 'vq_fmnist_s'}
        )
        torch.testing.assert_close(m2.log_likelihood(x, c), m.log_likelihood(x, c))
    with pytest.raises(TypeError, match="unexpected keyword argument 'pretrained'"):
        randar_fmnist(pretrained=True)  # builders take config overrides only


def test_config_errors():
    with pytest.raises(ValueError, match='divisible by 4'):
        RandARConfig(dim=72, n_head=4)
    with pytest.raises(ValueError, match="'random' or 'raster'"):
        RandARConfig(order='zigzag')
    with pytest.raises(TypeError, match='zigzag'):
        RandARConfig(zigzag=1)
    with torch.device('meta'):
        n = sum(p.numel() for p in create_model('randar_xl').parameters())
    assert 7e8 < n < 8e8  # RandAR-XL: 0.7B


def test_check_flag_skips_validation_only():
    """`check=False` (for callers that validated at their boundary) gives the same values and skips
    the checks."""
    m = randomized(RandAR(**TINY))
    g = torch.Generator().manual_seed(5)
    x, c, o = (
        torch.randint(0, 13, (3, 15), generator=g),
        torch.tensor([0, 1, 4]),
        random_orders(3, 15, g),
    )
    with torch.no_grad():
        torch.testing.assert_close(
            m.token_logprobs(x, c, o, check=False), m.token_logprobs(x, c, o), rtol=0, atol=0
        )
        torch.testing.assert_close(
            m.hidden(x, c, o, check=False), m.hidden(x, c, o), rtol=0, atol=0
        )
        not_perm = o[:, :1].expand(-1, 15).contiguous()  # in range, but not a permutation
        with pytest.raises(ValueError, match='permutation'):
            m.token_logprobs(x, c, not_perm)
        with pytest.raises(ValueError, match='permutation'):
            m.hidden(x, c, not_perm)
        assert m.token_logprobs(x, c, not_perm, check=False).shape == (3, 15)
        assert m.hidden(x, c, not_perm, check=False).shape == (3, 15, 32)
