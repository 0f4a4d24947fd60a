"""The REST API through FastAPI's TestClient, on the shipped models and a temporary data folder."""
import csv
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from leukodx.data.dataset import from_manifest
from leukodx.heads.expected import expected_mask
from leukodx.predict.predictor import Predictor
from leukodx.predict.shipped import shipped_model
from leukodx.serve.app import MAX_UPLOAD_BYTES, create_app
from tests.conftest import rgb, shared


def png(seed=0, size=64) -> bytes:
    buf = io.BytesIO()
    rgb(seed, size).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def client(tmp_path):
    return TestClient(create_app(tmp_path / "data"))


def test_predict_returns_what_the_cli_writes_plus_id_and_overlay(client):
    cell = next((shared("pbc192") / "neutrophil").iterdir()).read_bytes()
    r = client.post("/api/v1/predict", files={"file": ("cell.jpg", cell)}, data={"model": "wbc"})
    assert r.status_code == 200, r.text
    j = r.json()
    for k in ("id", "label", "probability", "probabilities", "refer", "refer_reason", "overlay", "model_sha256"):
        assert k in j
    assert j["path"] == "cell.jpg"
    predictor = Predictor.load(shipped_model("wbc"))
    cli = predictor.predict_images([Image.open(io.BytesIO(cell))])[0]
    assert (j["label"], j["refer_reason"]) == (cli.label, cli.refer_reason)  # the same package function
    assert j["probability"] == pytest.approx(cli.probability, abs=1e-5)
    o = client.get(j["overlay"])
    assert o.status_code == 200 and o.headers["content-type"] == "image/png" and o.content[:4] == b"\x89PNG"
    assert client.get(j["file"]).content == cell
    five = "basophil,eosinophil,lymphocyte,monocyte,neutrophil"
    r = client.post("/api/v1/predict", files={"file": ("cell.jpg", cell)}, data={"model": "wbc", "classes": five})
    limited = predictor.predict_images([Image.open(io.BytesIO(cell))], expected_mask(five, predictor.classes))[0]
    assert r.status_code == 200 and r.json()["expected_classes"] == five.split(",")
    assert (r.json()["label"], r.json()["refer_reason"]) == (limited.label, limited.refer_reason)
    r = client.post("/api/v1/predict", files={"file": ("cell.jpg", cell)}, data={"model": "wbc", "classes": "blast,ig"})
    assert r.status_code == 422 and "unknown to this model: blast" in r.text


def test_bad_uploads_get_clear_errors(client, tmp_path):
    assert client.post("/api/v1/predict", files={"file": ("x.png", b"not an image")}).status_code == 422
    assert client.post("/api/v1/predict", files={"file": ("x.png", b"")}).status_code == 422
    big = b"\0" * (MAX_UPLOAD_BYTES + 1)
    assert client.post("/api/v1/predict", files={"file": ("big.png", big)}).status_code == 413
    r = client.post("/api/v1/predict", files={"file": ("../../etc/passwd.png", png())}, data={"model": "all"})
    assert r.status_code == 200 and r.json()["filename"] == "passwd.png"  # the name never becomes a path
    assert not (tmp_path / "etc").exists()
    assert client.post("/api/v1/predict", files={"file": ("a.png", png())}, data={"model": "x"}).status_code == 422


def test_case_review_keeps_model_label_and_exports_a_manifest(client, tmp_path):
    case = client.post("/api/v1/cases", json={"name": "patient 1", "model": "wbc"}).json()
    ids = [client.post(f"/api/v1/cases/{case['id']}/images", files={"file": (f"{i}.png", png(i))}).json()["id"]
           for i in range(3)]
    first = client.get(f"/api/v1/images/{ids[0]}").json()
    assert client.post(f"/api/v1/images/{ids[0]}/review", json={"label": "nonsense", "reviewer": "ana"}).status_code == 422
    r = client.post(f"/api/v1/images/{ids[0]}/review", json={"label": "lymphocyte", "reviewer": "ana"}).json()
    assert r["review"]["label"] == "lymphocyte" and r["label"] == first["label"]  # model's label kept
    d = client.get(f"/api/v1/cases/{case['id']}").json()
    assert len(d["images"]) == 3 and d["summary"]["reviewed"] == 1
    text = client.get(f"/api/v1/cases/{case['id']}/corrections.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["label"] for r in rows] == ["lymphocyte"]
    (tmp_path / "m.csv").write_text(text)
    assert len(from_manifest(tmp_path / "m.csv")) == 1  # what train / adapt read
    for page in ("/", f"/cases/{case['id']}", f"/cases/{case['id']}/report"):
        assert client.get(page).status_code == 200
    assert "NOT REVIEWED" in client.get(f"/cases/{case['id']}/report").text or not any(
        i["refer"] for i in d["images"][1:])


def test_records_survive_a_restart_and_the_audit_log_is_append_only(tmp_path):
    c1 = TestClient(create_app(tmp_path / "data"))
    j = c1.post("/api/v1/predict", files={"file": ("a.png", png())}, data={"model": "all"}).json()
    app2 = create_app(tmp_path / "data")
    assert TestClient(app2).get(f"/api/v1/images/{j['id']}").json()["sha256"] == j["sha256"]
    rows = app2.state.store.audit_rows()
    assert rows[-1].action == "predict" and rows[-1].detail["input_sha256"] == j["sha256"]
    from leukodx.serve.storage import Audit
    with app2.state.store.session() as s, pytest.raises(PermissionError):
        s.get(Audit, rows[-1].id).who = "someone else"
        s.commit()


def test_token_is_required_when_set(tmp_path):
    c = TestClient(create_app(tmp_path / "data", token="s3cret"))
    assert c.get("/api/v1/cases").status_code == 401
    assert c.get("/api/v1/cases", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/", follow_redirects=False).status_code == 303


def test_accounts_roles_and_csrf(tmp_path):
    import re
    app = create_app(tmp_path / "data")
    store = app.state.store
    rev_token = store.add_user("ana", "reviewer", "correct horse")
    view_token = store.add_user("ben", "viewer", "battery staple")
    with pytest.raises(ValueError):
        store.add_user("cy", "admin", "whatever123")
    c = TestClient(app)
    assert c.get("/api/v1/cases").status_code == 401  # users exist: no anonymous access
    view = {"Authorization": f"Bearer {view_token}"}
    assert c.get("/api/v1/cases", headers=view).status_code == 200
    assert c.post("/api/v1/cases", json={"name": "x"}, headers=view).status_code == 403  # viewers only look
    rev = {"Authorization": f"Bearer {rev_token}"}
    assert c.post("/api/v1/cases", json={"name": "x"}, headers=rev).status_code == 201
    assert c.post("/login", data={"name": "ana", "password": "wrong"}).status_code == 401
    assert c.post("/login", data={"name": "ana", "password": "correct horse"}, follow_redirects=False).status_code == 303
    page = c.get("/").text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    assert c.post("/api/v1/cases", json={"name": "no csrf"}).status_code == 403
    assert c.post("/api/v1/cases", json={"name": "y"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert c.post("/api/v1/cases", json={"name": "z"}, headers={"X-CSRF-Token": csrf,
                                                              "Origin": "https://evil.example"}).status_code == 403
    assert [r.who for r in store.audit_rows() if r.action == "create_case"] == ["ana", "ana"]
    with store.session() as s:
        from leukodx.serve.storage import User
        stored = [u.password + u.token for u in s.query(User)]
    assert not any("correct horse" in x or rev_token in x for x in stored)  # only hashes are kept


def test_serve_refuses_to_bind_beyond_localhost_without_accounts(monkeypatch, tmp_path):
    from leukodx.cli import main
    monkeypatch.delenv("LEUKODX_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")]) == 2


def test_zip_upload_and_fhir_export(client):
    import json
    import zipfile
    case = client.post("/api/v1/cases", json={"name": "zip case", "model": "all"}).json()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("cells/a.png", png(1))
        z.writestr("cells/b.png", png(2))
        z.writestr("notes.txt", b"hello")
    r = client.post(f"/api/v1/cases/{case['id']}/archive", files={"file": ("case.zip", buf.getvalue())})
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["images"]) == 2 and [e["file"] for e in body["errors"]] == ["notes.txt"]
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", b"\0" * (64 * 2**20))
    assert client.post(f"/api/v1/cases/{case['id']}/archive", files={"file": ("b.zip", bomb.getvalue())}).status_code == 422
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../x.png", png(3))
    assert client.post(f"/api/v1/cases/{case['id']}/archive", files={"file": ("e.zip", evil.getvalue())}).status_code == 422
    pdf = client.get(f"/api/v1/cases/{case['id']}/report.pdf")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-" and pdf.headers["content-type"] == "application/pdf"
    fhir = client.get(f"/api/v1/cases/{case['id']}/fhir").json()
    assert fhir["resourceType"] == "DiagnosticReport" and len(fhir["contained"]) == 2
    assert fhir["status"] in ("preliminary", "final") and all(o["resourceType"] == "Observation" for o in fhir["contained"])
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    DiagnosticReport.model_validate(json.loads(json.dumps(fhir)))  # round-trips through the FHIR models


def test_a_case_limited_to_a_five_part_differential_says_so(client):
    import zipfile
    five = "basophil,eosinophil,lymphocyte,monocyte,neutrophil"
    case = client.post("/api/v1/cases", json={"name": "differential", "model": "wbc"}).json()
    cell = next((shared("pbc192") / "lymphocyte").iterdir()).read_bytes()
    j = client.post(f"/api/v1/cases/{case['id']}/images", files={"file": ("c.jpg", cell)}, data={"classes": five}).json()
    assert j["expected_classes"] == five.split(",") and j["label"] in five.split(",")
    assert j["expected_share"] > 0.5 and j["refer_reason"] != "unexpected_class"  # a lymphocyte is expected
    platelet = min((shared("pbc192") / "platelet").iterdir()).read_bytes()
    p = client.post(f"/api/v1/cases/{case['id']}/images", files={"file": ("p.jpg", platelet)}, data={"classes": five}).json()
    assert p["refer_reason"] == "unexpected_class" and p["expected_share"] < 0.5  # the model sees a platelet
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.jpg", cell)
    bad = client.post(f"/api/v1/cases/{case['id']}/archive", files={"file": ("c.zip", buf.getvalue())},
                      data={"classes": "lymphocyte,blast"})
    assert bad.status_code == 422 and "blast" in bad.text
    detail = client.get(f"/api/v1/cases/{case['id']}").json()
    assert detail["summary"]["limited_to"] == [five.replace(",", ", ")] and len(detail["images"]) == 2
    page = client.get(f"/cases/{case['id']}").text
    assert "Answers limited to: basophil, eosinophil" in page
    outside = round(100 * (1 - p["expected_share"]))
    assert f"{outside}% on classes outside the limit" in page  # the share left out is shown, not only the reason
    assert ">platelet (outside the limit)</option>" in page and ">lymphocyte</option>" in page
    assert f"{outside}% on classes outside the limit" in client.get(f"/cases/{case['id']}/report").text


def test_users_command_adds_an_account(tmp_path, monkeypatch, capsys):
    from leukodx.cli import main
    from leukodx.serve.storage import Store
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert main(["users", "add", "dana", "--role", "viewer", "--password-stdin", "--data-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.rsplit(" ", 1)[1].strip()
    assert Store(tmp_path).user_by_token(token).role == "viewer"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "eve", "--password-stdin", "--data-dir", str(tmp_path)]) == 2


def test_a_case_of_another_labs_cells_carries_the_lab_shift_flag(client):
    case = client.post("/api/v1/cases", json={"name": "tecom", "model": "wbc"}).json()
    for cls in ("lymphocyte", "monocyte"):
        for k, src in enumerate(sorted((shared("wbc_external") / "tecom" / cls).iterdir())[:6]):
            r = client.post(f"/api/v1/cases/{case['id']}/images", files={"file": (f"{cls}{k}.bmp", src.read_bytes())})
            assert r.status_code == 201, r.text
    flag = client.get(f"/api/v1/cases/{case['id']}").json()["summary"]["lab_shift_flag"]
    assert flag and "of 12 images" in flag
    for page in (f"/cases/{case['id']}", f"/cases/{case['id']}/report"):
        assert "Images unlike the training data" in client.get(page).text
    assert client.get(f"/api/v1/cases/{case['id']}/report.pdf").status_code == 200
    assert "WARNING: " + flag in client.get(f"/api/v1/cases/{case['id']}/fhir").json()["conclusion"]


def test_a_lab_adapts_the_model_from_a_reviewed_case_and_uses_it_for_new_cases(tmp_path):
    import hashlib

    from leukodx.cli import serve_models
    from leukodx.errors import LeukodxError

    client = TestClient(create_app(tmp_path / "data"))
    case = client.post("/api/v1/cases", json={"name": "our lab", "model": "wbc"}).json()
    cells = [(c, f) for c in ("lymphocyte", "monocyte", "neutrophil") for f in sorted((shared("pbc192") / c).iterdir())[:4]]
    ids = [client.post(f"/api/v1/cases/{case['id']}/images", files={"file": (f.name, f.read_bytes())}).json()["id"]
           for _, f in cells]
    unreviewed = sorted((shared("pbc192") / "lymphocyte").iterdir())[4]
    client.post(f"/api/v1/cases/{case['id']}/images", files={"file": (unreviewed.name, unreviewed.read_bytes())})
    client.post(f"/api/v1/images/{ids[0]}/review", json={"label": "lymphocyte", "reviewer": "dana"})
    one_class = client.post(f"/api/v1/cases/{case['id']}/adapt", json={"name": "mylab"})
    assert one_class.status_code == 422 and "at least two classes" in one_class.text
    for i, (label, _) in zip(ids[1:], cells[1:]):
        assert client.post(f"/api/v1/images/{i}/review", json={"label": label, "reviewer": "dana"}).status_code == 201
    assert client.post(f"/api/v1/cases/{case['id']}/adapt", json={"name": "My Lab"}).status_code == 422
    r = client.post(f"/api/v1/cases/{case['id']}/adapt", json={"name": "mylab"})
    assert r.status_code == 201, r.text
    assert r.json()["per_class"] == {"lymphocyte": 4, "monocyte": 4, "neutrophil": 4} and r.json()["source"] == "wbc"
    assert r.json()["unreviewed"] == r.json()["unlabelled"] == 1 and r.json()["pseudo_labelled"] in (0, 1)  # the unreviewed cell, self-training
    assert r.json()["classes_without_cells"] == ["basophil", "eosinophil", "erythroblast", "ig", "platelet"]  # said, not hidden
    assert r.json()["kept_classes"] == []  # the case's answers were not limited: no classes named for the lab
    assert client.post(f"/api/v1/cases/{case['id']}/adapt", json={"name": "mylab"}).status_code == 409
    card = client.get(r.json()["card"])
    assert card.status_code == 200 and f"case {case['id']} (reviewed cells)" in card.text and "12 cells" in card.text
    assert client.get("/api/v1/models/wbc/card").status_code == 200  # the shipped card too
    listed = {m["name"]: m for m in client.get("/api/v1/models").json()}
    assert listed["mylab"]["label"].startswith("mylab: adapted on 12 cells") and listed["mylab"]["five_part"]
    assert not listed["all"]["five_part"]
    assert ">mylab: adapted on 12 cells" in client.get("/").text  # offered on the upload page
    # a restart finds it (and a copy, `spare`); a new case with it answers with the adapted file, the shipped one is unchanged
    models = tmp_path / "data" / "models"
    for ext in (".pt", ".md"):
        (models / f"spare{ext}").write_bytes((models / f"mylab{ext}").read_bytes())
    again = TestClient(create_app(tmp_path / "data"))
    new = again.post("/api/v1/cases", json={"name": "next", "model": "mylab"})
    assert new.status_code == 201
    j = again.post(f"/api/v1/cases/{new.json()['id']}/images", files={"file": ("x.jpg", cells[0][1].read_bytes())}).json()
    adapted = tmp_path / "data" / "models" / "mylab.pt"
    assert j["model"] == "mylab" and j["model_sha256"] == hashlib.sha256(adapted.read_bytes()).hexdigest()
    assert again.post("/api/v1/cases", json={"name": "x", "model": "nosuch"}).status_code == 422
    shipped_sha = hashlib.sha256(shipped_model("wbc").read_bytes()).hexdigest()
    assert client.get(f"/api/v1/images/{ids[0]}").json()["model_sha256"] == shipped_sha != j["model_sha256"]
    assert [a.action for a in client.app.state.store.audit_rows()].count("adapt") == 1
    # deleting: only a model adapted here, and only while nothing has used it
    used = again.delete("/api/v1/models/mylab")
    assert used.status_code == 409 and f"case {new.json()['id']}" in used.json()["detail"] and adapted.exists()
    assert again.delete("/api/v1/models/wbc").status_code == 409 and shipped_model("wbc").exists()
    assert again.delete("/api/v1/models/nosuch").status_code == 404
    assert again.delete("/api/v1/models/spare").status_code == 204
    assert not (models / "spare.pt").exists() and not (models / "spare.md").exists()
    assert "spare" not in {m["name"] for m in again.get("/api/v1/models").json()}
    assert again.post("/api/v1/cases", json={"name": "y", "model": "spare"}).status_code == 422
    assert [a.action for a in again.app.state.store.audit_rows()].count("delete_model") == 1
    # a name being adapted is taken until the adaptation ends; a failed one frees it
    registry = again.app.state.registry
    registry.reserve("pending")
    assert again.post(f"/api/v1/cases/{case['id']}/adapt", json={"name": "pending"}).status_code == 409
    registry.finish("pending", made=False)
    assert registry.reserve("pending") == models / "pending.pt" and "pending" not in registry.paths
    # `leukodx serve --model NAME=PATH`: checked before serving
    assert serve_models([f"ours={adapted}"]) == {"ours": adapted}
    for bad in ("ours", f"Bad Name={adapted}", f"ours={tmp_path / 'missing.pt'}"):
        with pytest.raises((LeukodxError, OSError)):
            serve_models([bad])


def test_stain_normalised_fields_are_read_in_grayscale_and_the_pages_say_so(client):
    """The shipped ALL model answers a field whose (Macenko) colours it does not know from its gray copy
    (leukodx.heads.gray_fallback): the API says which, as the CLI does, and so do the case page and report."""
    from leukodx.transforms.shifts import build_shift

    fields = sorted((shared("taleqani_all") / "Pre").iterdir())[:8]
    macenko = build_shift("stain_macenko", Image.open(fields[0]).convert("RGB"))
    predictor = Predictor.load(shipped_model("all"))
    case = client.post("/api/v1/cases", json={"name": "stained elsewhere", "model": "all"}).json()
    flags = []
    for k, f in enumerate(fields[1:]):
        buf = io.BytesIO()
        macenko(Image.open(f).convert("RGB")).save(buf, "PNG")
        r = client.post(f"/api/v1/cases/{case['id']}/images", files={"file": (f"field{k}.png", buf.getvalue())})
        assert r.status_code == 201, r.text
        cli = predictor.predict_images([Image.open(io.BytesIO(buf.getvalue()))])[0]
        assert (r.json()["grayscale_copy"], r.json()["label"]) == (cli.grayscale_copy, cli.label)
        flags.append(cli.grayscale_copy)
    assert 0 < sum(flags) < len(flags)  # some fields are read in gray, and only some
    for page in (f"/cases/{case['id']}", f"/cases/{case['id']}/report"):
        assert client.get(page).text.count("read in grayscale: colours unfamiliar") == sum(flags)
    fhir = str(client.get(f"/api/v1/cases/{case['id']}/fhir").json())
    assert fhir.count("read in grayscale: colours unfamiliar") == sum(flags)
    assert client.get(f"/api/v1/cases/{case['id']}/report.pdf").status_code == 200
