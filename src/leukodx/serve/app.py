"""`leukodx serve`: the clinician's workspace. Thin routes over the package: every answer comes from
leukodx.predict / leukodx.explain, as the CLI's does; storage is leukodx.serve.storage.

REST API under /api/v1 (OpenAPI at /docs); pages at / (upload, cases) and /cases/{id} (review)."""
from __future__ import annotations

import csv
import hmac
import io
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from leukodx.errors import LeukodxError
from leukodx.heads.expected import FIVE_PART, expected_mask, outside_percent
from leukodx.heads.referral import lab_shift_flag
from leukodx.serve.models import NAME, Models
from leukodx.serve.storage import Case, Image, Review, Store

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_ARCHIVE_BYTES = 500 * 1024 * 1024  # unpacked size of one case archive


class CaseIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(default="wbc", pattern=NAME.pattern)


class AdaptIn(BaseModel):
    name: str = Field(pattern=NAME.pattern, description="name of the new model (1-20 of a-z, 0-9, '-', '_')")


class ReviewIn(BaseModel):
    label: str = Field(min_length=1, max_length=100)
    reviewer: str = Field(min_length=1, max_length=100)


def create_app(data_dir: str | Path, db_url: str | None = None, token: str | None = None,
               models: dict[str, Path] | None = None) -> FastAPI:
    """`models`: extra name -> model file (`leukodx serve --model NAME=PATH`), beside the shipped ones
    and those adapted in this data folder."""
    store = Store(data_dir, db_url)
    registry = Models(models, store.root / "models")
    app = FastAPI(title="leukodx", version="1", description="Explainable leukemia diagnosis: predict, review, report")
    pages = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

    def user(request: Request) -> str:
        """Who asks. API: `Authorization: Bearer` (the server token or a user's token). Pages: the session
        cookie, with the CSRF token in `X-CSRF-Token` on every change. With no server token and no users,
        everyone is the local reviewer. A change whose Origin is another site is always refused."""
        request.state.csrf = ""
        if request.method not in ("GET", "HEAD") and request.headers.get("origin") not in \
                (None, f"{request.url.scheme}://{request.headers.get('host', '')}"):
            raise HTTPException(403, "cross-site request refused")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
            if token and hmac.compare_digest(given, token):
                request.state.role = "reviewer"
                return "token"
            u = store.user_by_token(given)
            if u is None:
                raise HTTPException(401, "unknown API token")
            request.state.role = u.role
            return u.name
        found = store.session_user(request.cookies.get("leukodx_session", "")) \
            if request.cookies.get("leukodx_session") else None
        if found:
            u, csrf = found
            if request.method not in ("GET", "HEAD") and \
                    not hmac.compare_digest(request.headers.get("x-csrf-token", ""), csrf):
                raise HTTPException(403, "missing or wrong CSRF token")
            request.state.role, request.state.csrf = u.role, csrf
            return u.name
        if not token and not store.has_users():
            request.state.role = "reviewer"
            return "local"
        if request.url.path.startswith("/api/"):
            raise HTTPException(401, "sign in, or give an API token: Authorization: Bearer TOKEN")
        raise HTTPException(303, headers={"Location": "/login"})

    def reviewer(request: Request, who: str = Depends(user)) -> str:
        if request.state.role != "reviewer":
            raise HTTPException(403, f"{who} is a viewer: uploading and reviewing need the reviewer role")
        return who

    def limit(model: str, classes: str | None):
        """The mask of the classes an answer is limited to (None: all), or a 422 naming the unknown ones."""
        try:
            return expected_mask(classes or None, registry.get(model)[0].classes)
        except LeukodxError as e:
            raise HTTPException(422, str(e)) from None

    def predict_upload(upload: UploadFile, model: str, case_id: int | None, who: str, classes: str | None = None) -> dict:
        data = upload.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        if not data:
            raise HTTPException(422, "empty upload")
        name = Path(upload.filename or "upload").name[:300]  # display only: never used as a path
        path, digest = store.save_upload(data, Path(name).suffix)
        predictor, model_sha = registry.get(model)
        expected = limit(model, classes)
        with registry.lock:
            preds, errors = predictor.predict_paths([path], expected=expected)
        if errors:
            raise HTTPException(422, f"{name}: {errors[0]['error']}")
        pred = {**preds[0].to_dict(), "path": name}
        with store.session() as s:
            img = Image(case_id=case_id, filename=name, sha256=digest, stored=str(path.relative_to(store.root)),
                        model=model, model_sha256=model_sha, prediction=pred)
            s.add(img)
            s.flush()
            store.audit(s, who, "predict", image=img.id, case=case_id, input_sha256=digest, model=model,
                        model_sha256=model_sha, label=pred["label"], refer=pred["refer"])
            s.commit()  # acknowledged only after this: a killed server keeps every answered upload
            return image_json(img)

    def image_json(img: Image) -> dict:
        r = img.review()
        return {"id": img.id, "case_id": img.case_id, "filename": img.filename, "sha256": img.sha256,
                "model": img.model, "model_sha256": img.model_sha256, **img.prediction, "path": img.filename,
                "review": None if r is None else {"label": r.label, "reviewer": r.reviewer,
                                                  "at": r.created.isoformat()},
                "outside_limit": outside_percent(img.prediction.get("expected_share")),
                "overlay": f"/api/v1/images/{img.id}/overlay.png", "file": f"/api/v1/images/{img.id}/file"}

    def get_image(s, image_id: int) -> Image:
        img = s.get(Image, image_id)
        if img is None:
            raise HTTPException(404, f"no image {image_id}")
        return img

    def get_case(s, case_id: int) -> Case:
        case = s.get(Case, case_id)
        if case is None:
            raise HTTPException(404, f"no case {case_id}")
        return case

    # ---- REST API ----
    @app.get("/api/v1/health")
    def health():
        return {"ok": True, "models": list(registry.paths)}

    @app.post("/api/v1/predict")
    def predict(file: Annotated[UploadFile, File()], model: str = Form("all"), classes: str | None = Form(None),
                who: str = Depends(reviewer)):
        """One image -> the prediction JSON `leukodx predict` writes, plus an id and overlay link.
        `classes`: the answer is limited to these (comma list, as `leukodx predict --classes`)."""
        return predict_upload(file, model, None, who, classes)

    @app.post("/api/v1/cases", status_code=201)
    def create_case(body: CaseIn, who: str = Depends(reviewer)):
        with registry.lock, store.session() as s:  # a model is never deleted between this check and the case
            registry.get(body.model)  # a 422 for a name nobody registered
            case = Case(name=body.name, model=body.model)
            s.add(case)
            s.flush()
            store.audit(s, who, "create_case", case=case.id, name=body.name, model=body.model)
            s.commit()
            return {"id": case.id, "name": case.name, "model": case.model, "images": []}

    @app.get("/api/v1/cases")
    def list_cases(who: str = Depends(user)):
        with store.session() as s:
            return [{"id": c.id, "name": c.name, "model": c.model, "created": c.created.isoformat(),
                     "n_images": len(c.images)} for c in s.scalars(select(Case).order_by(Case.id.desc()))]

    @app.get("/api/v1/cases/{case_id}")
    def case_detail(case_id: int, who: str = Depends(user)):
        with store.session() as s:
            c = get_case(s, case_id)
            return {"id": c.id, "name": c.name, "model": c.model, "created": c.created.isoformat(),
                    "images": [image_json(i) for i in c.images], "summary": summary(c)}

    @app.post("/api/v1/cases/{case_id}/images", status_code=201)
    def add_image(case_id: int, file: Annotated[UploadFile, File()], classes: str | None = Form(None),
                  who: str = Depends(reviewer)):
        with store.session() as s:
            model = get_case(s, case_id).model
        return predict_upload(file, model, case_id, who, classes)

    @app.get("/api/v1/images/{image_id}")
    def image_detail(image_id: int, who: str = Depends(user)):
        with store.session() as s:
            return image_json(get_image(s, image_id))

    @app.get("/api/v1/images/{image_id}/file")
    def image_file(image_id: int, who: str = Depends(user)):
        with store.session() as s:
            return FileResponse(store.root / get_image(s, image_id).stored)

    @app.get("/api/v1/images/{image_id}/overlay.png")
    def overlay(image_id: int, who: str = Depends(user)):
        """Where the model looked for the predicted class (explain.DEFAULT_METHOD over the image; made on first
        request, then kept)."""
        with store.session() as s:
            img = get_image(s, image_id)
        from leukodx.explain.explainer import DEFAULT_METHOD

        out = store.root / "overlays" / f"{img.sha256}_{img.model}_{DEFAULT_METHOD}.png"
        if not out.exists():
            from leukodx.explain import Explainer
            from leukodx.explain.render import overlay as draw
            predictor, _ = registry.get(img.model)
            with registry.lock:
                e = Explainer(predictor.bundle).explain(store.root / img.stored, [DEFAULT_METHOD])[0]
            tmp = out.with_name(out.name + ".tmp")
            draw(e.image, e.map, e.caption).save(tmp, "PNG")
            tmp.replace(out)
        return FileResponse(out, media_type="image/png")

    @app.post("/api/v1/images/{image_id}/review", status_code=201)
    def review(image_id: int, body: ReviewIn, who: str = Depends(reviewer)):
        """Accept (the model's label) or correct it; the model's label is kept beside the reviewer's."""
        with store.session() as s:
            img = get_image(s, image_id)
            predictor, _ = registry.get(img.model)
            if body.label not in predictor.bundle.classes:
                raise HTTPException(422, f"'{body.label}' is not a class of this model "
                                         f"({', '.join(predictor.bundle.classes)})")
            s.add(Review(image_id=img.id, label=body.label, reviewer=body.reviewer))
            store.audit(s, who, "review", image=img.id, reviewer=body.reviewer, label=body.label,
                        model_label=img.prediction["label"], input_sha256=img.sha256, model_sha256=img.model_sha256)
            s.commit()
            s.refresh(img)
            return image_json(img)

    @app.get("/api/v1/cases/{case_id}/corrections.csv", response_class=PlainTextResponse)
    def corrections(case_id: int, who: str = Depends(user)):
        """Reviewed images as a manifest (path,label,group) that `leukodx train` and `adapt` read."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "label", "group", "model_label", "reviewer"])
        with store.session() as s:
            for img in get_case(s, case_id).images:
                r = img.review()
                if r is not None:
                    w.writerow([str((store.root / img.stored).resolve()), r.label, f"case{case_id}",
                                img.prediction["label"], r.reviewer])
        return PlainTextResponse(buf.getvalue(), media_type="text/csv")

    @app.get("/api/v1/models")
    def list_models(who: str = Depends(user)):
        return [registry.describe(name) for name in registry.paths]

    @app.get("/api/v1/models/{name}/card", response_class=PlainTextResponse)
    def model_card(name: str, who: str = Depends(user)):
        """The model's card (Markdown): what it was trained or adapted on, and how it scores."""
        registry.get(name)
        card = registry.paths[name].with_suffix(".md")
        if not card.is_file():
            raise HTTPException(404, f"model '{name}' has no card beside its file")
        return PlainTextResponse(card.read_text(encoding="utf-8"), media_type="text/markdown")

    def used_by(name: str) -> str:
        """'cases 2, 5 and 3 images' (or '') for the cases and single images a model answered."""
        with store.session() as s:
            cases = s.scalars(select(Case.id).where(Case.model == name)).all()
            loose = s.scalar(select(func.count(Image.id)).where(Image.model == name, Image.case_id.is_(None)))
        parts = ([("case " if len(cases) == 1 else "cases ") + ", ".join(map(str, cases))] if cases else []) + \
            ([f"{loose} image(s) outside cases"] if loose else [])
        return " and ".join(parts)

    @app.delete("/api/v1/models/{name}", status_code=204)
    def delete_model(name: str, who: str = Depends(reviewer)):
        """Delete a model adapted here, with its card, while no case or image has used it."""
        registry.remove(name, used_by)
        with store.session() as s:
            store.audit(s, who, "delete_model", model=name)
            s.commit()
        return Response(status_code=204)

    @app.post("/api/v1/cases/{case_id}/adapt", status_code=201)
    def adapt(case_id: int, body: AdaptIn, who: str = Depends(reviewer)):
        """A new model for this lab: the case's model with its head refit on the case's reviewed cells
        and self-trained on its other cells (`leukodx adapt --unlabelled ... --tap-stage auto`), saved as DATA_DIR/models/NAME.pt
        with its card; the original is never touched. New cases can then choose it."""
        from leukodx.data.dataset import DatasetIndex, ImageRecord
        from leukodx.train.adapt import adapt_model

        with store.session() as s:
            case = get_case(s, case_id)
            reviewed = [(str(store.root / i.stored), i.review().label) for i in case.images if i.review()]
            others = [store.root / i.stored for i in case.images if not i.review()]
            source = case.model
            # one class limit over the whole case: the lab's classes, so those it reviewed no cells of keep the
            # source head's rows (leukodx adapt --classes)
            limits = class_limits(case)
            lab_classes = list(next(iter(limits))) if len(limits) == 1 and () not in limits else None
        classes = sorted({label for _, label in reviewed})
        if len(classes) < 2:
            raise HTTPException(422, f"adapting needs reviewed cells of at least two classes; this case has "
                                     f"{len(reviewed)} reviewed cell(s) of {len(classes)} class(es)")
        index = DatasetIndex(f"case {case_id} (reviewed cells)", "", classes,
                             [ImageRecord(path, classes.index(label), f"case{case_id}") for path, label in reviewed])
        out = registry.reserve(body.name)  # the name is taken now; uploads go on while it adapts
        try:
            r = adapt_model(registry.paths[source], index, out, mode="head", unlabelled=others,
                            tap_stage="auto", lab_classes=lab_classes)
        finally:
            registry.finish(body.name, made=out.exists())
        with store.session() as s:
            store.audit(s, who, "adapt", case=case_id, model=body.name, source=source, n_images=r["n_images"],
                        model_sha256=registry.get(body.name)[1])
            s.commit()
        return {"model": body.name, "source": source, "n_images": r["n_images"], "per_class": r["per_class"],
                "unreviewed": len(others), "unlabelled": r["unlabelled"], "pseudo_labelled": r["pseudo_labelled"],
                "out_of_fold_accuracy": r["out_of_fold_accuracy"] if r["out_of_fold_folds"] >= 2 else None,
                "classes_without_cells": r["classes_without_cells"], "kept_classes": r["kept_classes"],
                "outside_lab_classes": r["outside_lab_classes"],
                "card": f"/api/v1/models/{body.name}/card"}

    @app.get("/api/v1/cases/{case_id}/report.pdf")
    def report_pdf(case_id: int, who: str = Depends(user)):
        """The case report as a PDF to file."""
        from leukodx.serve.pdf import case_pdf
        return Response(case_pdf(case_detail(case_id, who)), media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="case-{case_id}.pdf"'})

    @app.get("/api/v1/cases/{case_id}/fhir")
    def fhir(case_id: int, who: str = Depends(user)):
        """The case as a FHIR R4 DiagnosticReport with one Observation per image."""
        from leukodx.serve.fhir import case_report
        return case_report(case_detail(case_id, who))

    @app.post("/api/v1/cases/{case_id}/archive", status_code=201)
    def add_archive(case_id: int, file: Annotated[UploadFile, File()], classes: str | None = Form(None),
                    who: str = Depends(reviewer)):
        """A zip of images: unpacked with size, ratio and path limits; each image predicted and stored.
        Files that are not usable images are listed with the reason."""
        import tempfile
        import zipfile

        from leukodx.data.download import safe_extract
        from leukodx.data.walk import walk_files
        with store.session() as s:
            model = get_case(s, case_id).model
        limit(model, classes)  # refused before anything is unpacked
        with tempfile.TemporaryDirectory(dir=store.root) as tmp:
            z = Path(tmp) / "upload.zip"
            z.write_bytes(file.file.read(MAX_UPLOAD_BYTES + 1))
            if z.stat().st_size > MAX_UPLOAD_BYTES or not zipfile.is_zipfile(z):
                raise HTTPException(413 if z.stat().st_size > MAX_UPLOAD_BYTES else 422,
                                    "not a zip archive within the upload limit")
            try:
                safe_extract(z, Path(tmp) / "x", max_bytes=MAX_ARCHIVE_BYTES)
            except LeukodxError as e:
                raise HTTPException(422, str(e).replace(str(tmp), "")) from None
            files, skipped = walk_files(Path(tmp) / "x")
            done, errors = [], [{"file": Path(e["path"]).name, "error": e["error"]} for e in skipped]
            for f in files:
                try:
                    with open(f, "rb") as fh:
                        done.append(predict_upload(UploadFile(fh, filename=f.name), model, case_id, who, classes))
                except HTTPException as e:
                    errors.append({"file": f.name, "error": e.detail})
        return {"images": done, "errors": errors}

    # ---- pages ----
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return pages.TemplateResponse(request, "login.html", {"title": "Sign in"})

    @app.post("/login")
    def login(name: str = Form(...), password: str = Form(...)):
        found = store.login(name, password)
        if found is None:
            raise HTTPException(401, "wrong name or password")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie("leukodx_session", found[0], httponly=True, samesite="strict")
        return resp

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, who: str = Depends(user)):
        return pages.TemplateResponse(request, "index.html", {"title": "leukodx", "cases": list_cases(who),
                                                              "models": list_models(who), "five_part": FIVE_PART})

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: int, who: str = Depends(user)):
        c = case_detail(case_id, who)
        predictor, _ = registry.get(c["model"])
        return pages.TemplateResponse(request, "case.html", {"title": c["name"], "case": c,
                                                             "classes": predictor.bundle.classes})

    @app.get("/cases/{case_id}/report", response_class=HTMLResponse)
    def report_page(request: Request, case_id: int, who: str = Depends(user)):
        c = case_detail(case_id, who)
        return pages.TemplateResponse(request, "report.html", {"title": f"Report: {c['name']}", "case": c})

    @app.exception_handler(LeukodxError)
    def leukodx_error(_, e: LeukodxError):
        return Response(str(e), status_code=422)

    app.state.store, app.state.registry = store, registry
    return app


def class_limits(case: Case) -> set[tuple]:
    """The class limits the case's answers were given (leukodx.heads.expected); () for an unlimited answer."""
    return {tuple(img.prediction.get("expected_classes") or ()) for img in case.images}


def summary(case: Case) -> dict:
    """Counts per final label: the reviewer's if reviewed, else the model's; a referred image nobody
    reviewed is not counted (it must be checked first). The lab-shift flag warns when many of the
    case's images look unlike the model's training images (`lab_shift_flag`); `limited_to` lists the class
    limits its answers were given (leukodx.heads.expected)."""
    counts, referred, reviewed = {}, 0, 0
    for img in case.images:
        r = img.review()
        if r is None and img.prediction["refer"]:
            referred += 1
            continue
        label = r.label if r else img.prediction["label"]
        counts[label] = counts.get(label, 0) + 1
        reviewed += r is not None
    shift = lab_shift_flag([img.prediction.get("refer_reason") for img in case.images])
    limits = sorted(", ".join(t) for t in class_limits(case) if t)
    return {"n": len(case.images), "counted": sum(counts.values()), "counts": counts,
            "referred_unreviewed": referred, "reviewed": reviewed, "lab_shift_flag": shift, "limited_to": limits}
