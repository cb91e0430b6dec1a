#!/usr/bin/env python
"""Write `tests/fixtures/var_parity.pt`: what FoundationVision/VAR's own code computes on a small
VQ-VAE and VAR filled with weights that a rule makes from each parameter's name
(`tests/test_var.py::fill` makes the same weights in arclf's modules, whose names are the
official ones). `tests/test_var.py::test_equal_to_the_official_code` compares arclf with it.

Needs a checkout of https://github.com/FoundationVision/VAR (measured at 78b9539); its code is
run from there, never copied here:

    python tools/make_var_parity.py PATH/TO/VAR   (VAR_REV=<commit> names a copy without .git)
"""
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
from test_var import PARITY_VAE as VAE, PARITY_VAR as VAR, fill  # noqa: E402  the same rule
OUT = ROOT / 'tests' / 'fixtures' / 'var_parity.pt'


def main(var_root: str):
    sys.path.insert(0, var_root)
    from models.var import VAR as RefVAR
    from models.vqvae import VQVAE as RefVAE

    torch.manual_seed(0)
    pn = VAE['patch_nums']
    vae = RefVAE(vocab_size=VAE['vocab_size'], z_channels=VAE['z_channels'], ch=VAE['ch'],
                 test_mode=True, share_quant_resi=4, v_patch_nums=pn).eval()
    fill(vae)
    var = RefVAR(vae, num_classes=VAR['num_classes'], depth=VAR['depth'], embed_dim=VAR['dim'],
                 num_heads=VAR['n_head'], norm_eps=1e-6, shared_aln=False, cond_drop_rate=0.0,
                 attn_l2_norm=True, patch_nums=pn, flash_if_available=False,
                 fused_if_available=False).eval()
    fill(var)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, VAE['image_size'], VAE['image_size'], generator=g) * 2 - 1
    eps = torch.randn(2, VAE['z_channels'], pn[-1], pn[-1], generator=g) * 0.1
    labels = torch.tensor([3, VAR['num_classes']])  # a class and the null class
    with torch.no_grad():
        f = vae.quant_conv(vae.encoder(x))
        ids = vae.quantize.f_to_idxBl_or_fhat(f, to_fhat=False)
        nb = vae.quantize.f_to_idxBl_or_fhat(f + eps, to_fhat=False)  # A-VARC's neighbour
        x_in = vae.quantize.idxBl_to_var_input(ids)
        img = vae.idxBl_to_img(ids, same_shape=True, last_one=True)
        logits = var(labels, x_in)
    rev = os.environ.get('VAR_REV', 'unknown')  # a checkout without .git: say which it is
    head = Path(var_root) / '.git' / 'HEAD'
    if head.exists():
        import subprocess
        rev = subprocess.run(['git', '-C', var_root, 'rev-parse', 'HEAD'], capture_output=True,
                             text=True).stdout.strip()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(vae=VAE, var=VAR, source=f'FoundationVision/VAR {rev}', x=x, eps=eps,
                    labels=labels, f=f, ids=torch.cat(ids, 1), neighbour=torch.cat(nb, 1),
                    x_in=x_in, image=img, logits=logits), OUT)
    print(f'wrote {OUT} ({OUT.stat().st_size} bytes): {len(torch.cat(ids, 1)[0])} tokens, '
          f'{len(torch.cat(ids, 1).unique())} distinct codes')


if __name__ == '__main__':
    main(sys.argv[1])
