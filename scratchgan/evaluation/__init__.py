"""Evaluation: how good a trained GAN's samples are, and how fast the library runs.

    metrics.py        evaluate(run): judge scores, FID/KID, precision/recall, density/coverage, memorisation
    judge.py          the judge networks (LeNet-style classifiers built from scratchgan's layers)
    dataset_judge.py  a judge trained on a run's own data (image folders: rotation task, clusters)
    toy2d.py          the 2-D mixture benchmark: mode coverage of each loss family
    bench.py          `scratchgan bench`: layer, step and data-parallel timings
"""
