"""The shared base of the pooled-head kinds (classify, pairs, regress, multilabel): one pooled vector per example."""
