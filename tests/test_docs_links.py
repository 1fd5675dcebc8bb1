"""Every relative link and every ``configs/...yml`` path named in a README or a docs page points
to a file or folder that exists (links resolved from the page's folder, config paths from the
page's folder or the repository root; ``{a,b}`` alternatives expanded)."""
import glob
import itertools
import os
import re

import pytest
from conftest import REPO

PAGES = sorted({os.path.relpath(p, REPO) for pattern in ("*.md", "docs/**/*.md", "projects/*/README.md",
                                                          "projects/*/docs/**/*.md", "benchmarks/**/README.md")
                for p in glob.glob(os.path.join(REPO, pattern), recursive=True)})
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CONFIG = re.compile(r"(?<![\w/<>-])((?:[\w.-]+/)*configs/[\w./{},-]*?\.yml)")


def _expand(path: str):
    parts = re.split(r"\{([^}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def test_pages_are_found():
    assert {"README.md", "CHANGELOG.md", "docs/video-baseline.md", "projects/FGReID/README.md"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_exist(page):
    with open(os.path.join(REPO, page)) as f:
        text = f.read()
    here = os.path.dirname(os.path.join(REPO, page))
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not os.path.exists(os.path.normpath(os.path.join(here, path))):
            missing.append(target)
    assert not missing, f"{page}: links to missing files {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_named_config_files_exist(page):
    with open(os.path.join(REPO, page)) as f:
        text = f.read()
    here = os.path.dirname(os.path.join(REPO, page))
    missing = [p for named in CONFIG.findall(text) for p in _expand(named)
               if not any(os.path.isfile(os.path.normpath(os.path.join(base, p))) for base in (here, REPO))]
    assert not missing, f"{page}: names missing configs {sorted(set(missing))}"
