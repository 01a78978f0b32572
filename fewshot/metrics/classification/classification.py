"""`evaluate` metric module shipped with fewshot (loaded by path: no hub, works offline).

Scores integer predictions against integer references over a fixed label set with scikit-learn.
A prediction of -1 means "not a label" (an invalid answer): it is wrong for its row and is no
false positive for any class."""
import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

_DESCRIPTION = "Accuracy, macro/micro precision, recall and F1, per-class scores and the confusion matrix."
_KWARGS = """
predictions: list of int, label ids, -1 for an invalid answer
references: list of int, label ids
num_labels: int, the size of the label set
"""


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, num_labels):
        labels = list(range(num_labels))
        out = {"accuracy": float(accuracy_score(references, predictions)),
               "invalid": int(sum(p < 0 for p in predictions)), "n": len(references)}
        for avg in ("macro", "micro"):
            p, r, f, _ = precision_recall_fscore_support(references, predictions, labels=labels,
                                                         average=avg, zero_division=0)
            out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)})
        p, r, f, s = precision_recall_fscore_support(references, predictions, labels=labels,
                                                     average=None, zero_division=0)
        out["per_class"] = {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist()}
        out["confusion_matrix"] = confusion_matrix(references, predictions, labels=labels).tolist()
        return out
