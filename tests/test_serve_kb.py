"""Knowledge-base routes: upload → background ingestion → sources → search → remove, and every bad upload."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from _serve_util import CitingGenerator, make_kb, make_settings, wait_for_jobs
from ragtune.serve import create_app


def app_over_kb(folder, tiny_embedder_dir):
    settings = make_settings(tiny_embedder_dir, max_upload_mb=1)
    kb = make_kb(folder / "kb", settings)
    return create_app(kb, base=CitingGenerator(), settings=settings, report_dir=folder / "no-report")


@pytest.fixture()
def kb_app(tmp_path, tiny_embedder_dir):
    return app_over_kb(tmp_path, tiny_embedder_dir)


@pytest.fixture(scope="module")
def refusing(tmp_path_factory, tiny_embedder_dir):
    """One server for the tests whose uploads must all be refused: its uploads/ folder must stay empty."""
    folder = tmp_path_factory.mktemp("refusing")
    with TestClient(app_over_kb(folder, tiny_embedder_dir)) as client:
        yield client, folder
    uploads = folder / "kb" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def assert_nothing_kept(client, folder):
    uploads = folder / "kb" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert client.get("/v1/kb/jobs").json()["data"] == []


def test_upload_is_ingested_listed_searchable_and_removable(kb_app, tmp_path):
    with TestClient(kb_app) as client:
        text = "The Vantor drone flies for 31 minutes on one battery and folds into a pocket.\n"
        r = client.post("/v1/kb/documents", files=[("file", ("vantor.md", text.encode(), "text/markdown"))])
        assert r.status_code == 202, r.text
        job = r.json()["data"][0]
        assert job["filename"] == "vantor.md" and job["status"] in ("queued", "running", "done")
        assert "path" not in job  # the server's layout is not exposed

        (done,) = wait_for_jobs(client, [job["id"]])
        assert done["status"] == "done", done
        assert done["report"]["sources"][0]["status"] == "added"
        assert (tmp_path / "kb" / "uploads" / "vantor.md").read_text() == text

        names = [s["source"] for s in client.get("/v1/kb/sources").json()["data"]]
        assert "uploads/vantor.md" in names and "kb-docs/zorblax.md" in names
        assert all("path" not in s for s in client.get("/v1/kb/sources").json()["data"])

        hits = client.post("/v1/kb/search", json={"query": "Vantor drone battery minutes", "k": 2}).json()["data"]
        assert hits[0]["source"] == "uploads/vantor.md" and "31 minutes" in hits[0]["text"]
        assert set(hits[0]) == {"source", "text", "score", "metadata"}

        r = client.delete("/v1/kb/sources/uploads/vantor.md")
        assert r.status_code == 200 and r.json()["chunks_removed"] >= 1
        assert not (tmp_path / "kb" / "uploads" / "vantor.md").exists()
        assert "uploads/vantor.md" not in [s["source"] for s in client.get("/v1/kb/sources").json()["data"]]
        r = client.delete("/v1/kb/sources/uploads/vantor.md")
        assert r.status_code == 404 and r.json()["error"]["code"] == "source_not_found"

        jobs = client.get("/v1/kb/jobs").json()["data"]
        assert [j["id"] for j in jobs] == [job["id"]]


def raw_multipart(filename: str, content: bytes) -> tuple[bytes, dict]:
    """A multipart body with the file name exactly as given (clients would escape odd characters)."""
    boundary = "ragtune-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n")
    body = head.encode("utf-8") + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..\\..\\windows\\win.ini", "../kb/x.md",
                                  "sub/dir.txt", "..", ".hidden.md", "a\x00b.txt", "tab\there.txt"])
def test_traversal_and_odd_file_names_are_refused_and_nothing_is_written(refusing, name):
    client, folder = refusing
    body, headers = raw_multipart(name, b"some text\n")
    r = client.post("/v1/kb/documents", content=body, headers=headers)
    assert r.status_code == 400, (name, r.text)
    err = r.json()["error"]
    assert err["code"] == "invalid_filename" and err["param"] == "file" and err["type"] == "invalid_request_error"
    assert_nothing_kept(client, folder)
    assert not (folder / "x.md").exists() and not (folder / "kb" / "x.md").exists()


def test_a_windows_absolute_name_never_escapes_uploads(kb_app, tmp_path):
    # python-multipart reduces "C:\\..." names to their last part (an old browser quirk); either way the
    # file may only land in uploads/ under a plain name.
    with TestClient(kb_app) as client:
        r = client.post("/v1/kb/documents", files=[("file", ("C:\\Windows\\x.txt", b"text\n", "text/plain"))])
        assert r.status_code in (202, 400), r.text
        if r.status_code == 202:
            assert r.json()["data"][0]["filename"] == "x.txt"
            assert [p.name for p in (tmp_path / "kb" / "uploads").iterdir()] == ["x.txt"]


def test_one_bad_name_refuses_the_whole_upload(refusing):
    client, folder = refusing
    r = client.post("/v1/kb/documents", files=[("file", ("fine.txt", b"fine\n", "text/plain")),
                                               ("file", ("../evil.txt", b"evil\n", "text/plain"))])
    assert r.status_code == 400
    assert_nothing_kept(client, folder)


@pytest.mark.parametrize("name,content,status,code", [
    ("tool.exe", b"MZ\x90\x00binary", 415, "unsupported_file_type"),
    ("noext", b"text", 415, "unsupported_file_type"),
    ("fake.pdf", b"this is not a pdf at all", 415, "unsupported_file_type"),
    ("fake.docx", b"plain text pretending", 415, "unsupported_file_type"),
    ("binary.txt", b"\x00\x01\x02\x03garbage", 415, "unsupported_file_type"),
    ("empty.md", b"", 400, "empty_file"),
])
def test_wrong_types_and_empty_files_are_refused(refusing, name, content, status, code):
    client, folder = refusing
    r = client.post("/v1/kb/documents", files=[("file", (name, content, "application/octet-stream"))])
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert_nothing_kept(client, folder)


def test_a_refused_file_drops_the_files_staged_before_it(refusing):
    client, folder = refusing
    r = client.post("/v1/kb/documents", files=[("file", ("fine.txt", b"fine\n", "text/plain")),
                                               ("file", ("fake.pdf", b"not a pdf", "application/pdf"))])
    assert r.status_code == 415
    assert_nothing_kept(client, folder)


def test_oversize_upload_gets_413_before_anything_is_kept(refusing):
    client, folder = refusing
    big = b"word " * (300 * 1024)  # 1.5 MB > max_upload_mb=1
    r = client.post("/v1/kb/documents", files=[("file", ("big.txt", big, "text/plain"))])
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert_nothing_kept(client, folder)


def test_a_file_that_cannot_be_read_fails_its_job_with_the_reason(kb_app):
    with TestClient(kb_app) as client:
        r = client.post("/v1/kb/documents", files=[("file", ("broken.pdf", b"%PDF-1.4 then nothing", "application/pdf"))])
        assert r.status_code == 202
        (job,) = wait_for_jobs(client, [r.json()["data"][0]["id"]])
        assert job["status"] == "failed" and "broken.pdf" in job["message"]
        assert "/uploads/" not in job["message"]  # names the file, not the server's folder
        assert client.get("/v1/kb/jobs/job-nope").status_code == 404


def test_upload_without_file_and_no_kb(refusing, tiny_embedder_dir):
    client, folder = refusing
    r = client.post("/v1/kb/documents", data={"note": "no file"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_file"
    bare = create_app(None, base=CitingGenerator(), settings=make_settings(tiny_embedder_dir))
    with TestClient(bare) as client:
        for method, path in (("get", "/v1/kb/sources"), ("post", "/v1/kb/search"), ("get", "/v1/kb/jobs")):
            r = getattr(client, method)(path, **({"json": {"query": "x"}} if method == "post" else {}))
            assert r.status_code == 404 and r.json()["error"]["code"] == "kb_not_configured"


def test_shutdown_finishes_queued_ingestion_and_restart_resumes_leftovers(tmp_path, tiny_embedder_dir):
    settings = make_settings(tiny_embedder_dir)
    kb = make_kb(tmp_path / "kb", settings)
    app = create_app(kb, base=CitingGenerator(), settings=settings)
    files = [("file", (f"note{i}.txt", f"Note {i}: the Plimb valve opens at {i} bar.\n".encode(), "text/plain"))
             for i in range(4)]
    with TestClient(app) as client:
        assert client.post("/v1/kb/documents", files=files).status_code == 202
    # Leaving the block shut the app down: every queued job finished first.
    names = {s.source for s in kb.sources()}
    assert {f"uploads/note{i}.txt" for i in range(4)} <= names

    # A file left in uploads/ by a run that died before ingesting it is picked up at the next start.
    (tmp_path / "kb" / "uploads" / "late.txt").write_text("The late note mentions the Ossel pump.\n")
    with TestClient(create_app(kb, base=CitingGenerator(), settings=settings)) as client:
        pass
    assert "uploads/late.txt" in {s.source for s in kb.sources()}
