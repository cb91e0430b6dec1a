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


class Killed(Exception):
    "A training run stopped on purpose, as a killed process would stop."


def kill_after(step: int):
    "A training callback that stops the run right after `step`, once its checkpoint is saved."
    from arclf.core import Callback

    class Kill(Callback):
        order = 200  # after CheckpointCB has saved the step

        def after_step(self, learn):
            if learn.iter == step:
                raise Killed

    return Kill()
