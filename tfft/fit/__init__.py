"""Training: the job, the recipe (pure functions), the phase loop, callbacks, the feature cache and tf.distribute."""
