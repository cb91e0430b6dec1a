import os
from pathlib import Path
import pytest

SHARED = Path(__file__).resolve().parents[1].parent/'shared'/'data'

@pytest.fixture(scope='session')
def data_root():
    "The folder holding fashion-mnist/ and cifar10-jpg.tar.gz: $ARCLF_DATA, else ../shared/data beside the repo."
    root = Path(os.environ.get('ARCLF_DATA', SHARED))
    if not (root/'fashion-mnist').exists(): pytest.skip(f'no data at {root}: set ARCLF_DATA')
    return root
