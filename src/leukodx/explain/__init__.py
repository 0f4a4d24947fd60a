"""Explanations: CAM family, Integrated Gradients, SHAP, LIME, attention rollout; faithfulness and
shortcut audits. Entry point: `Explainer(bundle).explain(image, methods)`."""
from leukodx.explain.explainer import METHODS, Explainer, Explanation
from leukodx.explain.targets import ExplainError

__all__ = ["METHODS", "ExplainError", "Explainer", "Explanation"]
