"""The GitHub workflows are valid, use pinned maintained actions, and the README points at the right places."""

import re

import pytest
import yaml
from conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
MAINTAINED = {
    "actions/checkout",
    "actions/setup-python",
    "actions/cache",
    "actions/configure-pages",
    "actions/upload-pages-artifact",
    "actions/deploy-pages",
    "actions/upload-artifact",
}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_and_pins_its_actions(path):
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert workflow["jobs"] and (True in workflow or "on" in workflow)  # PyYAML reads `on:` as True
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                action, _, version = step["uses"].partition("@")
                assert action in MAINTAINED, step["uses"]
                assert re.fullmatch(r"v\d+", version), f"{step['uses']}: pin a major version"


def test_tests_workflow_runs_make_test_and_pages_deploys_the_build():
    test = (ROOT / ".github/workflows/test.yml").read_text(encoding="utf-8")
    pages = (ROOT / ".github/workflows/pages.yml").read_text(encoding="utf-8")
    assert "run: make test" in test and 'python-version: "3.11"' in test
    assert "run: make book" in pages and "path: _build/html" in pages and "actions/deploy-pages@" in pages


def test_readme_urls_follow_the_repository_setting():
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    owner, name = url.rstrip("/").split("/")[-2:]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"https://{owner}.github.io/{name}/" in readme
    for workflow in WORKFLOWS:
        assert f"https://github.com/{owner}/{name}/actions/workflows/{workflow.name}/badge.svg" in readme


def test_drift_workflow_is_weekly_and_manual_and_uploads_its_report():
    path = ROOT / ".github/workflows/drift.yml"
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    triggers = workflow[True]
    assert re.fullmatch(r"\d+ \d+ \* \* \d", triggers["schedule"][0]["cron"])  # once a week
    assert "versions" in triggers["workflow_dispatch"]["inputs"]
    steps = workflow["jobs"]["drift"]["steps"]
    assert any(step.get("run") == "make drift" for step in steps)
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "_build/drift/"
    # the manual input reaches make through the environment, not pasted into a shell line
    assert workflow["jobs"]["drift"]["env"]["DRIFT_VERSIONS"] == "${{ inputs.versions }}"
    assert "${{" not in "".join(step.get("run", "") for step in steps)
