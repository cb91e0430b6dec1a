"""Write an example image folder for the README's your-own-data walkthrough, from Fashion-MNIST:

    python tools/example_folder.py my_images [--classes Pullover,Coat,Shirt] [--n-train 1500]
        [--n-test 334] [--source auto|full|shipped]

gives my_images/train/<class>/*.png and my_images/test/<class>/*.png, a folder laid out as
`--data PATH` reads it. `--source full` draws the training images from Fashion-MNIST's training
set and the test images from its test set (the dataset found by `$ARCLF_DATA` or `--root`, as
`arclf data` finds it); `shipped` from the 100 test images per class that ship with arclf (no data
needed, so at most 100 images per class in all: a workflow demo, too few for a trustworthy
accuracy); `auto` (the default) takes the full dataset where it is found.
"""
import argparse
from pathlib import Path
from PIL import Image
from arclf.data import FASHION_CLASSES, FASHION_SUBSET_N, DatasetNotFound, load_dataset

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
source = a.source
if source != 'shipped':
    try:
        train, test = (load_dataset('fashion_mnist', s, a.root) for s in ('train', 'test'))
        source = 'full'
    except DatasetNotFound as e:
        if source == 'full':
            p.error(f'{e}: set $ARCLF_DATA or --root, or use --source shipped')
        source = 'shipped'
if source == 'shipped':
    if a.n_train + a.n_test > FASHION_SUBSET_N:
        n_test = min(a.n_test, FASHION_SUBSET_N // 5)
        print(f'the shipped images hold {FASHION_SUBSET_N} per class: {FASHION_SUBSET_N - n_test} '
              f'training + {n_test} test images each')
        a.n_train, a.n_test = FASHION_SUBSET_N - n_test, n_test
    shipped = load_dataset('fashion_mnist', 'test', n_per_class=FASHION_SUBSET_N)
    train, test = shipped, shipped
for c in names:
    k = FASHION_CLASSES.index(c)
    # the shipped images serve both splits: the test images are those after the training ones
    xs = {'train': train.x[train.y == k][:a.n_train],
          'test': test.x[test.y == k][a.n_train if source == 'shipped' else 0:][:a.n_test]}
    for split, x in xs.items():
        if len(x) < (a.n_train if split == 'train' else a.n_test):
            p.error(f'{c}: only {len(x)} {split} images in the {source} data')
        d = Path(a.out) / split / c.replace('/', '-')
        d.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(x):
            Image.fromarray(img[0].numpy()).save(d / f'{i:04d}.png')
print(f'wrote {a.out}/train and {a.out}/test: {len(names)} classes, {a.n_train} + {a.n_test} '
      f'images each, from the {source} Fashion-MNIST')
