"""The jobs: the one run setup, training (phases, callbacks, the feature cache, tf.distribute), publishing, re-export,
scoring an export, and the jobs built on training (learning curves, the LR range test, hyperparameter search)."""
