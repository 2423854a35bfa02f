"""The kinds of task, one package each (tfft/tasks/KIND/), behind the contracts in tfft.tasks.api; the registry
(tfft.tasks.registry) names them."""
