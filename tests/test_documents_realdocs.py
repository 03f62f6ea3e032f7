"""Real pages and a real paper from ../shared/data/real-docs: article text in, boilerplate out, pages kept.

The expected sentences and the menu/footer strings were read from the HTML source of each page.
"""

from __future__ import annotations

import pytest

from ragtune.documents import Chunker, iter_files, load

pytestmark = pytest.mark.integration


def flat(text: str) -> str:
    return " ".join(text.split())


PAGES = {
    # triple j (ABC): a FAQ between the ABC's network menu and its footer
    "5743200906912265445.html": {
        "title": "Coronavirus FAQs: Answers to your most common questions in one place - triple j",
        "present": [
            "Symptoms include fever, coughing, sore throat, fatigue, and shortness of breath.",
            "Several schools around the country have closed temporarily after a staff member or student tested "
            "positive for the virus.",
            "### What are the symptoms?",
        ],
        "absent": ["We acknowledge Aboriginal and Torres Strait Islander peoples", "Frequency Finder",
                   "Recently Played", "Editorial Policies", "Skip to main content"],
    },
    # USA TODAY: readers' questions; the article's links and mojibake non-breaking spaces inside sentences
    "-7473333379586622353.html": {
        "title": "You asked us tons of questions about the coronavirus. We're answering them.",
        "present": [
            "A study of more than 72,000 cases in mainland China found that at least one person between ten and "
            "19 years of age had died, but no one younger than ten had died.",
            "## How old was the youngest person to die from the virus?",
        ],
        "absent": ["Newsroom Staff", "Best Pet Insurance", "Subscription Terms & Conditions", "Crossword",
                   "Start the day smarter"],
    },
    # CTV News: mojibake apostrophes in the source ("Whatâ\x80\x99s") must come out repaired
    "9018148810936266427.html": {
        "title": None,
        "present": [
            "The ill person should have their own bathroom, if possible.",
            "What’s more, caregivers should remain vigilant about monitoring themselves for symptoms for 14 days.",
        ],
        "absent": ["Political Ads Registry", "jQuery", "tooltipster", "Back to top", "All rights reserved"],
    },
}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_real_html_article_text_without_boilerplate(shared_data, name):
    expected = PAGES[name]
    doc = load(shared_data / "real-docs" / "html" / name, name)
    text = flat(doc.text)
    for sentence in expected["present"]:
        assert flat(sentence) in text
    for boilerplate in expected["absent"]:
        assert boilerplate not in text
    if expected["title"]:
        assert doc.metadata["title"] == expected["title"]
    assert "Ã" not in text and "â\x80" not in text  # no mojibake left


def test_real_html_folder_loads_and_chunks(shared_data):
    folder = shared_data / "real-docs" / "html"
    found = list(iter_files([folder]))
    assert len(found) == 10 and all(source.startswith(folder.as_posix() + "/") for _, source in found)
    chunker = Chunker(256, 32)
    small = sorted(found, key=lambda item: item[0].stat().st_size)[:4]  # the big ones take seconds each
    for path, source in small:
        chunks = chunker(load(path, source))
        assert chunks and all(c.source == source and c.metadata["tokens"] <= 256 for c in chunks)


def test_real_pdf_pages_and_text(shared_data):
    doc = load(shared_data / "real-docs" / "pdf" / "HistoryOfAlexnet.pdf", "HistoryOfAlexnet.pdf")
    assert doc.metadata["page_count"] == 39 and len(doc.metadata["page_starts"]) == 39
    text = flat(doc.text)
    assert "Abstract—In recent years, deep learning has garnered tremendous success" in text
    assert "This report presents a brief survey on the advances that have occurred in the area of DL" in text
    # the running header "> REPLACE THIS LINE WITH YOUR PAPER IDENTIFICATION NUMBER ..." is on every page
    assert "REPLACE THIS LINE" not in text
    sentence = "Another difficult task is Visual Question Answering (VQA) using GRUs"
    page21 = doc.text[doc.metadata["page_starts"][20]:doc.metadata["page_starts"][21]]
    assert sentence in flat(page21)  # page 21 of the paper, checked against the PDF

    chunks = Chunker(256, 32)(doc)
    assert all(1 <= c.metadata["page"] <= c.metadata["page_end"] <= 39 for c in chunks)
    assert {c.metadata["page"] for c in chunks} == set(range(1, 40))
    holding = [c for c in chunks if sentence in flat(c.text)]
    assert holding and all(c.metadata["page"] <= 21 <= c.metadata["page_end"] for c in holding)
