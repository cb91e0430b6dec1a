"""Write an example image folder for the README's your-own-data walkthrough, from Fashion-MNIST:

    python tools/example_folder.py my_images [--classes Pullover,Coat,Shirt] [--n-train 1500]
        [--n-test 334] [--source auto|full|shipped] [--root PATH]

gives my_images/train/<class>/*.png and my_images/test/<class>/*.png, a folder laid out as
`--data PATH` reads it. `--source full` draws the training images from Fashion-MNIST's training
set and the test images from its test set (found on disk as `arclf data` finds it: `--root`,
`$ARCLF_DATA`, arclf's cache; never downloaded here); `shipped` from the 100 test images per class
that ship with arclf (no data needed, so at most 100 images per class in all: a workflow demo, too
few for a trustworthy accuracy); `auto` (the default) takes the full dataset where it is on disk.
The folder must not exist yet (images of an earlier call would mix into the new splits).
"""
import argparse
from pathlib import Path
from PIL import Image
from arclf.data import FASHION_CLASSES, FASHION_SUBSET_N, DatasetNotFound, load_fashion_mnist

p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
p.add_argument('out')
p.add_argument('--classes', default='Pullover,Coat,Shirt',
               help='Fashion-MNIST class names, comma-separated (the default: three that look alike)')
p.add_argument('--n-train', type=int, default=1500, help='training images per class')
p.add_argument('--n-test', type=int, default=334, help='test images per class')
p.add_argument('--source', choices=('auto', 'full', 'shipped'), default='auto')
p.add_argument('--root', help='the folder holding Fashion-MNIST (wins over $ARCLF_DATA)')
a = p.parse_args()
names = a.classes.split(',')
if bad := [c for c in names if c not in FASHION_CLASSES]:
    p.error(f'unknown classes {bad}: use names from {FASHION_CLASSES}')
if a.n_train < 1 or a.n_test < 1:
    p.error('--n-train and --n-test must be at least 1')
if Path(a.out).exists():
    p.error(f'{a.out} exists: give a new folder (or remove it), so that no earlier image mixes in')
source = a.source
if source != 'shipped':
    try:
        train, test = (load_fashion_mnist(s, a.root, download=False) for s in ('train', 'test'))
        source = 'full'
    except DatasetNotFound as e:
        if source == 'full' or a.root:  # a folder named and not there is a mistake, not a fallback
            p.error(f'{e}: set $ARCLF_DATA or --root to the folder holding fashion-mnist/, or use '
                    '--source shipped')
        source = 'shipped'
if source == 'shipped':
    if a.n_train + a.n_test > FASHION_SUBSET_N:
        n_test = min(a.n_test, FASHION_SUBSET_N // 5)
        n_train = min(a.n_train, FASHION_SUBSET_N - n_test)
        print(f'the shipped images hold {FASHION_SUBSET_N} per class: {n_train} training + '
              f'{n_test} test images each')
        a.n_train, a.n_test = n_train, n_test
    shipped = load_fashion_mnist('test', n_per_class=FASHION_SUBSET_N)
    train, test = shipped, shipped


def splits(c: str) -> dict:
    "The training and test images of class `c`."
    k = FASHION_CLASSES.index(c)
    # the shipped images serve both splits: the test images are those after the training ones
    return {'train': train.x[train.y == k][:a.n_train],
            'test': test.x[test.y == k][a.n_train if source == 'shipped' else 0:][:a.n_test]}


for c in names:  # every class checked before anything is written: no half-made folder
    for split, x in splits(c).items():
        if len(x) < (a.n_train if split == 'train' else a.n_test):
            p.error(f'{c}: only {len(x)} {split} images in the {source} data')
for c in names:
    for split, x in splits(c).items():
        d = Path(a.out) / split / c.replace('/', '-')
        d.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(x):
            Image.fromarray(img[0].numpy()).save(d / f'{i:04d}.png')
print(f'wrote {a.out}/train and {a.out}/test: {len(names)} classes, {a.n_train} + {a.n_test} '
      f'images each, from the {source} Fashion-MNIST')
