"""Write an example image folder for the README's your-own-data walkthrough, from the Fashion-MNIST
test images shipped with arclf (no data or network needed):

    python tools/example_folder.py my_images [--classes Trouser,Bag,Sneaker] [--n-train 80]

gives my_images/train/<class>/*.png (the first n-train shipped images of each class) and
my_images/test/<class>/*.png (the rest), a folder laid out as `--data PATH` reads it.
"""
import argparse
from pathlib import Path
from PIL import Image
from arclf.data import FASHION_CLASSES, FASHION_SUBSET_N, load_dataset

p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
p.add_argument('out')
p.add_argument('--classes', default='Trouser,Bag,Sneaker')
p.add_argument('--n-train', type=int, default=80)
a = p.parse_args()
names = a.classes.split(',')
if bad := [c for c in names if c not in FASHION_CLASSES]:
    p.error(f'unknown classes {bad}: use names from {FASHION_CLASSES}')
if not 0 < a.n_train < FASHION_SUBSET_N:
    p.error(f'--n-train must lie in 1..{FASHION_SUBSET_N - 1}')
ds = load_dataset('fashion_mnist', 'test', n_per_class=FASHION_SUBSET_N)
for c in names:
    x = ds.x[ds.y == FASHION_CLASSES.index(c)]
    for i, img in enumerate(x):
        split = 'train' if i < a.n_train else 'test'
        d = Path(a.out) / split / c.replace('/', '-')
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(d / f'{i:03d}.png')
print(f'wrote {a.out}/train and {a.out}/test: {len(names)} classes, {a.n_train} + '
      f'{FASHION_SUBSET_N - a.n_train} images each')
