"""The classical peers of the sentiment classifier (spec: `peers`), fitted on train and chosen on validation by
rnnlab.evaluation.peers.tune in the evaluate stage: baseline.tfidf_lr and baseline.nbsvm in
metrics/sentiment.json. Both read the snippets' raw text with scikit-learn's word tokenizer (lower-cased runs
of two or more word characters): the textbook recipes, not rnnlab's vocabulary."""

from __future__ import annotations

import numpy as np
from scipy.sparse import diags
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from rnnlab.evaluation.peers import Peer, tune


def tfidf_lr(dm) -> Peer:
    """TF-IDF of word 1-2-grams + L2-regularised logistic regression; C in powers of 4 around scikit-learn's
    default 1 (on the full split validation accuracy is flat from 4 to 64)."""
    return tune(dm, "tfidf_lr", lambda C: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)),
                                                        LogisticRegression(C=C, max_iter=1000)),
                {"C": [0.25, 1.0, 4.0, 16.0, 64.0, 256.0]})


class NBSVM:
    """NB-SVM: Wang & Manning, "Baselines and Bigrams: Simple, Good Sentiment and Topic Classification", ACL 2012,
    section 2.3. Binarized word 1-2-gram indicators x, scaled by the log-count ratio
    r = log((p / |p|_1) / (q / |q|_1)), p = alpha + the sum of x over the positive rows of train, q over the
    negative ones; a linear SVM (L2-regularised squared hinge, liblinear, as theirs) on r * x, its weights then
    interpolated w' = (1 - beta) * mean|w| + beta * w (beta 1: the plain SVM; theirs 0.25, alpha 1)."""

    def __init__(self, C: float, beta: float, alpha: float = 1.0):
        self.C, self.beta, self.alpha = C, beta, alpha
        self.words = CountVectorizer(ngram_range=(1, 2), binary=True)

    def fit(self, texts: list[str], y: np.ndarray) -> NBSVM:
        if sorted(set(y.tolist())) != [0, 1]:
            raise ValueError(f"NB-SVM needs two classes, 0 and 1, in train; it has {sorted(set(y.tolist()))}")
        x = self.words.fit_transform(texts)
        p, q = (self.alpha + np.asarray(x[y == c].sum(0)).ravel() for c in (1, 0))
        self.r = diags(np.log(p / p.sum()) - np.log(q / q.sum()))
        # random_state: liblinear's dual solver visits the rows in a random order
        self.svm = LinearSVC(C=self.C, random_state=0).fit(x @ self.r, y)
        w = self.svm.coef_
        self.svm.coef_ = (1 - self.beta) * np.abs(w).mean() + self.beta * w
        return self

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.svm.predict(self.words.transform(texts) @ self.r)


def nbsvm(dm) -> Peer:
    """C from 0.01 to 1 (the features are scaled by |r|, up to about 5: the useful C is smaller than without);
    beta: theirs or none."""
    return tune(dm, "nbsvm", NBSVM, {"C": [0.01, 0.03, 0.1, 0.3, 1.0], "beta": [0.25, 1.0]})
