"""The coconut stage with training batches drawn at random instead of length-bucketed.

The training loop sorts examples by length within windows of 32 batches (train_loop.batches)
to save padding. On this task, question length follows the number of steps so closely
that every bucketed batch holds problems of one step count only. This runner passes
`length=None` to the loop, so each batch is a random draw of the training set; everything
else is the committed stage. The trials ran it through the shared trial script:

    bash reports/experiments/trial.sh D coconut 'pass' reports/experiments/random_batches/unsorted_batches.py
"""
import sys

import latent_reasoning.stages.coconut as stage

bucketed_train = stage.train
stage.train = lambda *args, **kwargs: bucketed_train(*args, **{**kwargs, "length": None})
sys.argv[0] = "coconut"
stage.main()
