#!/usr/bin/env python3
"""Reference numbers from scikit-learn for edge-agent's evaluate::metrics.

Usage: sklearn_check.py INPUT.json
INPUT: {"labels": [str...], "truth": [int...], "scores": [[float...]...]}, where each
scores row holds the model's probabilities over its classes (the first
len(row) labels; every row has the same length) and truth indexes labels, possibly
past the model's classes (a class the model cannot predict).

Prints JSON: frames, accuracy, per_class [{label, support, precision, recall, f1,
auroc, auprc}], macro_precision, macro_recall, macro_f1, macro_auroc, macro_auprc,
confusion (rows = every label, columns = model classes). Conventions as in the Rust
module: zero_division=0; macro P/R/F1 over the labels occurring in truth or
prediction; AUROC/AUPRC one-vs-rest, null when the class is not a model class or
has no positive or no negative frame. Needs only numpy and scikit-learn.
"""

import json
import sys

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def check(data):
    labels = list(data["labels"])
    truth = np.asarray(data["truth"], dtype=np.int64)
    scores = np.asarray(data["scores"], dtype=np.float64)
    frames = len(truth)
    n_model = scores.shape[1] if scores.ndim == 2 else 0
    n_labels = max([len(labels), n_model] + [int(t) + 1 for t in truth])
    labels += ["#%d" % i for i in range(len(labels), n_labels)]
    # np.argmax returns the first maximum: the lowest index wins ties, as in Rust.
    pred = scores.argmax(axis=1) if frames and n_model else np.zeros(0, dtype=np.int64)
    every = list(range(n_labels))

    if frames:
        p, r, f, s = precision_recall_fscore_support(
            truth, pred, labels=every, average=None, zero_division=0
        )
        present = np.union1d(truth, pred)
        mp, mr, mf, _ = precision_recall_fscore_support(
            truth, pred, labels=present, average="macro", zero_division=0
        )
        cm = confusion_matrix(truth, pred, labels=every)[:, :n_model]
        accuracy = float(np.mean(truth == pred))
    else:
        p = r = f = np.zeros(n_labels)
        s = np.zeros(n_labels, dtype=np.int64)
        mp = mr = mf = 0.0
        cm = np.zeros((n_labels, n_model), dtype=np.int64)
        accuracy = 0.0

    per_class = []
    for c, label in enumerate(labels):
        y = truth == c
        auroc = auprc = None
        if c < n_model and y.any() and not y.all():
            auroc = float(roc_auc_score(y, scores[:, c]))
            auprc = float(average_precision_score(y, scores[:, c]))
        per_class.append(
            {
                "label": label,
                "support": int(s[c]),
                "precision": float(p[c]),
                "recall": float(r[c]),
                "f1": float(f[c]),
                "auroc": auroc,
                "auprc": auprc,
            }
        )

    return {
        "frames": frames,
        "accuracy": accuracy,
        "per_class": per_class,
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
        "macro_auroc": mean_or_none(m["auroc"] for m in per_class),
        "macro_auprc": mean_or_none(m["auprc"] for m in per_class),
        "confusion": cm.astype(int).tolist(),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sklearn_check.py INPUT.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    json.dump(check(data), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
