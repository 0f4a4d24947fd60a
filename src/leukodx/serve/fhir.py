"""A case as a FHIR R4 DiagnosticReport (fhir.resources, R4B models): one contained Observation per
image with the final label (reviewer's, else the model's), the model's label and probability, and
the referral reason. Status is 'preliminary' while a referred image is unreviewed, else 'final'."""
from __future__ import annotations

from datetime import UTC, datetime

from leukodx.heads.gray_fallback import GRAY_NOTE

ALL_CLASSES = {"Benign", "Early", "Pre", "Pro"}  # the ALL severity model's classes (an adapted copy keeps them)


def case_report(case: dict) -> dict:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.observation import Observation

    obs = []
    for im in case["images"]:
        review = im.get("review")
        final = review["label"] if review else im["label"]
        notes = [f"model label {im['label']} (p = {im['probability']})",
                 f"referred: {im['refer_reason']}" if im["refer"] else "not referred",
                 *([GRAY_NOTE] if im.get("grayscale_copy") else []),
                 f"reviewed by {review['reviewer']}" if review else "not reviewed",
                 f"image sha256 {im['sha256']}; model sha256 {im['model_sha256']}"]
        status = "final" if review or not im["refer"] else "preliminary"
        obs.append(Observation(id=f"image-{im['id']}", status=status,
                               code={"text": "ALL severity class" if final in ALL_CLASSES else "white cell type"},
                               valueCodeableConcept={"text": final}, note=[{"text": n} for n in notes]))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(case["summary"]["counts"].items()))
    pending = case["summary"]["referred_unreviewed"]
    report = DiagnosticReport(
        status="preliminary" if pending else "final",
        code={"text": f"leukodx blood-smear image review ({case['model']} model)"},
        identifier=[{"system": "urn:leukodx:case", "value": str(case["id"])}],
        issued=datetime.now(UTC).isoformat(),
        contained=obs, result=[{"reference": f"#{o.id}"} for o in obs],
        conclusion=f"{case['name']}: {case['summary']['counted']} images counted ({counts})"
                   + (f"; {pending} referred images not reviewed" if pending else "")
                   + (f". WARNING: {case['summary']['lab_shift_flag']}" if case["summary"].get("lab_shift_flag") else ""))
    return report.model_dump(mode="json", exclude_none=True)
