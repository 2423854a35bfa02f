"""The names of the scalars a classification report holds (what --min_metric can gate on); imports nothing heavy."""

# All lie in [0, 1]. top_k needs more than k classes; roc_auc and pr_auc are reported for binary tasks only.
TOP_K = (2, 3, 5)
CLASSIFICATION_SCALARS = (("accuracy",) + tuple(f"top_{k}_accuracy" for k in TOP_K)
                          + tuple(f"{a}_{m}" for a in ("micro", "macro", "weighted")
                                  for m in ("precision", "recall", "f1"))
                          + ("roc_auc", "pr_auc"))
