"""arclf: order-marginalized autoregressive generative image classifiers, in notebook-first PyTorch.

The front door (written by hand; the rest of the package is exported from `nbs/`):

    import arclf
    arclf.list_models()                                     # every registered model
    model = arclf.create_model('randar_fmnist', pretrained=True)
    clf = arclf.create_classifier('randar_fmnist')          # RandAR + its tokenizer
    clf.predict(images, n=5)                                # classes, from K = 5 orders per image
"""
__version__ = "0.1.0"

from .core import create_model, list_models, model_meta, register_model, seed_everything
from .data import load_dataset
from .scorer import (GenerativeClassifier, RandARClassifier, sample_scores, evaluate, prune,
                     prune_evaluate, aggregate, predict, accuracy, RULES)
from .classifiers import create_classifier, DiffusionClassifier
# model families that nothing above imports: importing them registers their presets
from . import llamagen, maskgit  # noqa: F401

__all__ = ['create_model', 'list_models', 'model_meta', 'register_model', 'seed_everything',
           'load_dataset', 'GenerativeClassifier', 'RandARClassifier', 'DiffusionClassifier',
           'create_classifier', 'sample_scores', 'evaluate', 'prune', 'prune_evaluate', 'aggregate',
           'predict', 'accuracy', 'RULES']
