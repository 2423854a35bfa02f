"""TF-IDF + LinearSVC on exactly the split tfft.train makes, for a baseline beside the fine-tuned model.

Usage: python bench/tfidf_baseline.py [--dataset=bbc_news] [--seed=42 ...] [--val_fraction=0.1] [--test_fraction=0.2]
  [--dedupe=split|drop|off] [--train_examples_per_class=N]
Prints test accuracy and macro-F1 per seed; the model is fit on the train split (or its few-shot draw) only.
"""

import argparse

import numpy as np
from sklearn import metrics
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from tfft.config import DataConfig
from tfft.data import split as split_lib
from tfft.data import text as text_data


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="bbc_news")
  parser.add_argument("--seed", type=int, nargs="+", default=[42])
  parser.add_argument("--val_fraction", type=float, default=0.1)
  parser.add_argument("--test_fraction", type=float, default=0.2)
  parser.add_argument("--dedupe", default="split", choices=("split", "drop", "off"))
  parser.add_argument("--train_examples_per_class", type=int, default=0)
  args = parser.parse_args()
  data = DataConfig(dataset=args.dataset, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                    dedupe=args.dedupe, train_examples_per_class=args.train_examples_per_class)
  examples = text_data.load_examples(data)
  texts = np.array(examples.texts, dtype=object)
  labels = np.array(examples.labels)
  for seed in args.seed:
    split = split_lib.split_examples(examples, data, seed=seed).indices
    train, test = split["train"], split["test"]
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    model = LinearSVC().fit(vectorizer.fit_transform(texts[train]), labels[train])
    predicted = model.predict(vectorizer.transform(texts[test]))
    print(f"seed={seed} test={len(test)} accuracy={metrics.accuracy_score(labels[test], predicted):.4f} "
          f"macro_f1={metrics.f1_score(labels[test], predicted, average='macro'):.4f}")


if __name__ == "__main__":
  main()
