"""Baselines from scikit-learn, fitted on the run's train split and scored on its test split, beside the model."""

from typing import Sequence

import numpy as np

TEXT_METHOD = "TF-IDF (word 1-2 grams, sublinear tf) + LinearSVC"
PAIR_METHOD = ("TF-IDF (word 1-2 grams, sublinear tf) of each text, their elementwise product and their cosine "
               "+ LinearSVC")
IMAGE_METHOD = "logistic regression on {size}x{size} RGB pixels"
TEXT_REGRESSION_METHOD = "TF-IDF (word 1-2 grams, sublinear tf) + ridge regression (alpha 1)"
IMAGE_REGRESSION_METHOD = "ridge regression (alpha 1) on standardised {size}x{size} RGB pixels"


def _text_features(train_texts: Sequence, test_texts: Sequence):
  """TF-IDF of the train and test texts, fitted on train; for pairs of texts, each side's TF-IDF (one vocabulary),
  their elementwise product (which words the two share) and their cosine (how much they share, one column: a
  linear model would need many pairs to learn it from the product's thousands of columns)."""
  from scipy import sparse  # pylint: disable=g-import-not-at-top
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top

  vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
  if not train_texts or not isinstance(train_texts[0], (tuple, list)):
    return vectorizer.fit_transform(list(train_texts)), vectorizer.transform(list(test_texts))
  vectorizer.fit([text for pair in train_texts for text in pair])

  def features(pairs):
    a, b = (vectorizer.transform([pair[side] for pair in pairs]) for side in (0, 1))
    shared = a.multiply(b)
    cosine = sparse.csr_matrix(shared.sum(axis=1))  # the rows are L2-normalised: the sum is the cosine
    return sparse.hstack([a, b, shared, cosine]).tocsr()

  return features(train_texts), features(test_texts)


def _full_width(scores: np.ndarray, classes: np.ndarray, num_classes: int, fill: float) -> np.ndarray:
  """Scores per class index: scikit-learn gives columns only for classes it saw in training."""
  if scores.ndim == 1:  # binary decision_function: the score of classes[1]
    scores = np.stack([-scores, scores], axis=1)
  full = np.full((len(scores), num_classes), fill)
  full[:, classes] = scores
  return full


def _softmax(scores: np.ndarray) -> np.ndarray:
  shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
  return shifted / shifted.sum(axis=1, keepdims=True)


def text_baseline(train_texts: Sequence[str], y_train: Sequence[int], test_texts: Sequence[str], *,
                  num_classes: int) -> np.ndarray:
  """TF-IDF + LinearSVC.

  LinearSVC rather than logistic regression: on BBC News (seed 42) it scored 0.964 test accuracy in 0.5 s, where
  logistic regression scored 0.953-0.962 in 8-14 s. It gives decision scores, not probabilities; their softmax
  ranks the classes as the scores do, which is all that accuracy, top-k and the AUCs read.

  Returns:
    [N_test, num_classes] softmax of the decision scores.
  """
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top

  x_train, x_test = _text_features(train_texts, test_texts)
  model = LinearSVC().fit(x_train, np.asarray(y_train))
  scores = model.decision_function(x_test)
  return _softmax(_full_width(scores, model.classes_, num_classes, -np.inf))


def text_regression_baseline(train_texts: Sequence[str], y_train: Sequence[float],
                             test_texts: Sequence[str]) -> np.ndarray:
  """TF-IDF + ridge regression.

  Returns:
    [N_test] predictions in the label's units.
  """
  from sklearn.linear_model import Ridge  # pylint: disable=g-import-not-at-top

  x_train, x_test = _text_features(train_texts, test_texts)
  return Ridge(alpha=1.0).fit(x_train, np.asarray(y_train, np.float64)).predict(x_test)


def image_regression_baseline(train_images: Sequence[np.ndarray], y_train: Sequence[float],
                              test_images: Sequence[np.ndarray], *, size: int = 16) -> np.ndarray:
  """Ridge regression on standardised downscaled pixels.

  Returns:
    [N_test] predictions in the label's units.
  """
  from sklearn.linear_model import Ridge  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top

  model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
  model.fit(image_features(train_images, size), np.asarray(y_train, np.float64))
  return model.predict(image_features(test_images, size))


def image_features(images: Sequence[np.ndarray], size: int = 16) -> np.ndarray:
  """Each image (H, W, 1|3|4 uint8, any size) downscaled to size x size RGB, flattened to [0, 1] floats."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rows = []
  for image in images:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
      array = array[..., 0]
    small = Image.fromarray(array.astype(np.uint8)).convert("RGB").resize((size, size), Image.BILINEAR)
    rows.append(np.asarray(small, dtype=np.float32).reshape(-1) / 255.0)
  return np.stack(rows)


def image_baseline(train_images: Sequence[np.ndarray], y_train: Sequence[int], test_images: Sequence[np.ndarray], *,
                   num_classes: int, size: int = 16) -> np.ndarray:
  """Logistic regression on standardised downscaled pixels.

  Returns:
    [N_test, num_classes] predicted probabilities.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top

  model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  model.fit(image_features(train_images, size), np.asarray(y_train))
  probabilities = model.predict_proba(image_features(test_images, size))
  return _full_width(probabilities, model.classes_, num_classes, 0.0)
