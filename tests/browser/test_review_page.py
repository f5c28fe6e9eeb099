"""The review page end to end: a real mesh, a real headless chromium, a reviewer's clicks.

Each decision is checked where it matters: the run resumes down the branch the decision
chose (the approval graph applies, applies the edited change, or ends without applying).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from browser_helpers import SCREENSHOTS, sign_in
from playwright.sync_api import expect

from graphmesh.v1 import run_pb2
from helpers import wait_for

REFUND = {"action": "refund", "target": "order-17", "amount": 42}
CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]


def _finished(review_mesh, run_id: str) -> run_pb2.Run:
    return wait_for(lambda: (r := review_mesh.run(run_id)).status in (
        run_pb2.RUN_STATUS_COMPLETED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED) and r,
        60, message=f"run {run_id} to finish")


def _row(page, approval_id: str):
    return page.locator(f'[data-testid="approval-row"][data-approval-id="{approval_id}"]')


def test_sign_in_refuses_a_bad_token_and_keeps_the_token_to_the_tab(review_mesh, page, context, browser):
    response = page.goto(review_mesh.url)
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"

    page.get_by_label("graphmesh token or JWT").fill("gm_not_a_real_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile("token", re.I))
    expect(page.get_by_text("Signed in as")).to_have_count(0)

    page.get_by_label("graphmesh token or JWT").fill(review_mesh.tokens["rita"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as rita")).to_be_visible()
    assert review_mesh.tokens["rita"] not in page.url
    # Kept for this tab only: sessionStorage, no cookie, nothing in localStorage.
    assert context.cookies() == []
    assert page.evaluate("Object.keys(localStorage).length") == 0
    page.reload()
    expect(page.get_by_text("Signed in as rita")).to_be_visible()
    other_tab = browser.new_context().new_page()  # another tab's session starts signed out
    other_tab.goto(review_mesh.url)
    expect(other_tab.get_by_label("graphmesh token or JWT")).to_be_visible()
    other_tab.context.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("graphmesh token or JWT")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_api_refuses_calls_without_a_token_and_cross_origin_decisions(review_mesh, page):
    api = page.request
    assert api.get(review_mesh.url + "api/approvals").status == 401
    assert api.get(review_mesh.url + "api/me", headers={"authorization": "Bearer nope"}).status == 401
    refused = api.post(review_mesh.url + "api/approvals/00000000-0000-0000-0000-000000000000/decision",
                       headers={"authorization": f"Bearer {review_mesh.tokens['rita']}",
                                "origin": "https://evil.example", "content-type": "application/json"},
                       data=json.dumps({"kind": "approve"}))
    assert refused.status == 403 and refused.json()["error"]["code"] == "CROSS_ORIGIN"


def test_an_approval_appears_live_and_approving_it_resumes_the_run(review_mesh, page):
    sign_in(page, review_mesh, "rita")
    expect(page.get_by_text("live")).to_be_visible()
    run = review_mesh.create_run("approval_workflow", REFUND)
    approval_id = review_mesh.approval_of(run.run_id)
    row = _row(page, approval_id)
    expect(row).to_be_visible()  # no reload: the watch stream brought it
    expect(row).to_contain_text("approval_workflow")
    row.get_by_role("link").first.click()

    expect(page.get_by_test_id("approval-status")).to_have_text(re.compile("PENDING", re.I))
    expect(page.get_by_text("Refund 42.00 to order-17").first).to_be_visible()  # the payload, readable
    page.get_by_label(re.compile("comment", re.I)).fill("looks right")
    page.get_by_test_id("approve").click()
    expect(page.get_by_test_id("decision")).to_contain_text(re.compile("approve", re.I))
    expect(page.get_by_test_id("approve")).to_have_count(0)

    assert _finished(review_mesh, run.run_id).status == run_pb2.RUN_STATUS_COMPLETED
    values = review_mesh.thread_values(run.thread_id)
    assert values["applied"] is True and values["decision"] == "approved"
    assert values["reviewer"] == "rita" and values["review_comment"] == "looks right"
    # The events the page shows follow the resumed run to its end.
    expect(page.get_by_text(re.compile("COMPLETED")).first).to_be_visible()


def test_the_queue_resumes_after_the_review_service_restarts(review_mesh, page):
    sign_in(page, review_mesh, "rita")
    first = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-30"})
    first_id = review_mesh.approval_of(first.run_id)
    expect(_row(page, first_id)).to_be_visible()
    review_mesh.mesh.stop_service("review")  # a deploy of the review tier: the page loses its stream
    try:
        expect(page.get_by_text("live", exact=True)).to_have_count(0)
        second = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-31"})
        wait_for(lambda: review_mesh.run(second.run_id).status == run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL, 30,
                 message="the second run to wait for its approval")
    finally:
        review_mesh.mesh.start_service("review")
    second_id = review_mesh.approval_of(second.run_id)
    # Reconnected after the last sequence it saw: the approval requested meanwhile arrives,
    # nothing is lost and nothing needed a reload.
    expect(_row(page, second_id)).to_be_visible(timeout=30_000)
    expect(_row(page, first_id)).to_be_visible()
    expect(page.get_by_text("live", exact=True)).to_be_visible()


def test_rejecting_ends_the_run_without_the_change(review_mesh, page):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-18"})
    approval_id = review_mesh.approval_of(run.run_id)
    sign_in(page, review_mesh, "rita", f"/approvals/{approval_id}")
    page.get_by_label(re.compile("comment", re.I)).fill("duplicate")
    page.get_by_test_id("reject").click()
    expect(page.get_by_test_id("decision")).to_contain_text(re.compile("reject", re.I))
    assert _finished(review_mesh, run.run_id).status == run_pb2.RUN_STATUS_COMPLETED
    values = review_mesh.thread_values(run.thread_id)
    assert values["applied"] is False and values["decision"] == "rejected" and values.get("final_change") is None


def test_an_edit_is_validated_in_the_page_and_applied_by_the_run(review_mesh, page):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-19"})
    approval_id = review_mesh.approval_of(run.run_id)
    sign_in(page, review_mesh, "rita", f"/approvals/{approval_id}")
    page.get_by_test_id("edit").click()
    editor = page.get_by_test_id("edit-value")
    editor.fill('{"amount": 40,')  # not JSON yet: nothing can be sent
    expect(page.get_by_test_id("send-edit")).to_be_disabled()
    editor.fill('{"amount": 40}')
    expect(page.get_by_test_id("send-edit")).to_be_enabled()
    page.get_by_test_id("send-edit").click()
    expect(page.get_by_test_id("decision")).to_contain_text(re.compile("edit", re.I))
    assert _finished(review_mesh, run.run_id).status == run_pb2.RUN_STATUS_COMPLETED
    values = review_mesh.thread_values(run.thread_id)
    assert values["applied"] is True and values["decision"] == "edited"
    assert values["final_change"]["amount"] == 40 and values["final_change"]["target"] == "order-19"


def test_a_decision_made_elsewhere_shows_on_the_open_page(review_mesh, page):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-20"})
    approval_id = review_mesh.approval_of(run.run_id)
    sign_in(page, review_mesh, "rita", f"/approvals/{approval_id}")
    expect(page.get_by_test_id("approve")).to_be_visible()
    cli = subprocess.run([*CLI, "approvals", "--review", review_mesh.mesh.review_address, "reject", approval_id,
                          "--comment", "from the terminal"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "GRAPHMESH_TOKEN": review_mesh.tokens["ada"]})
    assert cli.returncode == 0, cli.stdout + cli.stderr
    expect(page.get_by_test_id("decision")).to_contain_text("ada")  # live, no reload
    expect(page.get_by_test_id("approve")).to_have_count(0)


def test_a_stale_page_deciding_late_is_told_who_decided_first(review_mesh, page):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-21"})
    approval_id = review_mesh.approval_of(run.run_id)
    page.route("**/api/approvals/watch*", lambda route: route.abort())  # this page hears nothing live
    sign_in(page, review_mesh, "rita", f"/approvals/{approval_id}")
    expect(page.get_by_test_id("approve")).to_be_visible()
    from graphmesh.v1 import review_service_pb2 as rpb
    review_mesh.review("ada").Decide(rpb.DecideRequest(approval_id=approval_id, kind=rpb.DECISION_KIND_APPROVE),
                                     timeout=10)
    page.get_by_test_id("reject").click()
    expect(page.get_by_test_id("decision")).to_contain_text("ada")
    expect(page.get_by_test_id("decision")).to_contain_text(re.compile("approve", re.I))
    expect(page.get_by_test_id("reject")).to_have_count(0)
    values = review_mesh.thread_values(_finished(review_mesh, run.run_id).thread_id)
    assert values["decision"] == "approved"  # the first decision stands


def test_an_expired_approval_leaves_the_queue_and_is_in_the_history(review_mesh, page):
    sign_in(page, review_mesh, "rita")
    run = review_mesh.create_run("approval_with_deadline", {**REFUND, "target": "order-22"})
    approval_id = review_mesh.approval_of(run.run_id)
    expect(_row(page, approval_id)).to_be_visible()
    expect(_row(page, approval_id)).to_have_count(0, timeout=30_000)  # 3 s limit, then the expiry sweep
    values = review_mesh.thread_values(_finished(review_mesh, run.run_id).thread_id)
    assert values["applied"] is False
    page.get_by_role("link", name="History", exact=True).click()
    page.get_by_label(re.compile("run", re.I)).first.fill(run.run_id)
    page.get_by_role("button", name=re.compile("search|apply|filter", re.I)).first.click()
    expect(page.get_by_text("EXPIRED").first).to_be_visible()


def test_a_reviewer_without_the_role_sees_no_decide_buttons_and_is_refused(review_mesh, page):
    run = review_mesh.create_run("parallel_review", {"request": "new office", "amount": 1000})
    approval_id = review_mesh.approval_of(run.run_id, node="budget_review")  # needs the finance role
    sign_in(page, review_mesh, "lee", f"/approvals/{approval_id}")
    expect(page.get_by_test_id("approval-status")).to_have_text(re.compile("PENDING", re.I))
    expect(page.get_by_test_id("cannot-decide")).to_contain_text("finance")
    expect(page.get_by_test_id("approve")).to_have_count(0)
    forced = page.request.post(review_mesh.url + f"api/approvals/{approval_id}/decision",
                               headers={"authorization": f"Bearer {review_mesh.tokens['lee']}",
                                        "content-type": "application/json"},
                               data=json.dumps({"kind": "approve"}))
    assert forced.status == 403 and forced.json()["error"]["code"] == "ROLE_REQUIRED"
    # rita holds finance: she sees the buttons on the same approval.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, review_mesh, "rita", f"/approvals/{approval_id}")
    expect(page.get_by_test_id("approve")).to_be_visible()


def test_a_submitter_is_not_shown_approvals(review_mesh, page):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-23"})
    approval_id = review_mesh.approval_of(run.run_id)
    sign_in(page, review_mesh, "sam")
    expect(page.get_by_text(re.compile("needs the role reviewer")).first).to_be_visible()
    assert _row(page, approval_id).count() == 0


def test_keyboard_approves_and_the_audit_names_the_reviewer(review_mesh, page):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-24"})
    approval_id = review_mesh.approval_of(run.run_id)
    sign_in(page, review_mesh, "rita", f"/approvals/{approval_id}")
    expect(page.get_by_test_id("approve")).to_be_visible()
    page.locator("body").click(position={"x": 5, "y": 5})  # focus out of any field
    page.keyboard.press("a")
    expect(page.get_by_test_id("decision")).to_contain_text(re.compile("approve", re.I))
    assert _finished(review_mesh, run.run_id).status == run_pb2.RUN_STATUS_COMPLETED
    page.get_by_role("link", name="Audit", exact=True).click()
    page.get_by_label(re.compile("run", re.I)).first.fill(run.run_id)
    page.get_by_role("button", name=re.compile("search|apply|filter", re.I)).first.click()
    expect(page.get_by_text("rita").first).to_be_visible()


def test_narrow_screen_labels_and_screenshots(review_mesh, browser, tmp_path):
    run = review_mesh.create_run("approval_workflow", {**REFUND, "target": "order-25", "reason": "damaged"})
    approval_id = review_mesh.approval_of(run.run_id)
    phone = browser.new_context(viewport={"width": 360, "height": 740})
    page = phone.new_page()
    try:
        sign_in(page, review_mesh, "rita")
        expect(_row(page, approval_id)).to_be_visible()
        for path in ("/", f"/approvals/{approval_id}", "/history", "/audit"):
            page.goto(review_mesh.url.rstrip("/") + path)
            page.get_by_text("Signed in as rita").wait_for()
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, f"{path} scrolls sideways"
            unlabeled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
                .filter(e => e.type !== 'hidden' && !e.labels.length && !e.getAttribute('aria-label'))
                .map(e => e.outerHTML)""")
            assert unlabeled == [], f"{path}: fields without a label: {unlabeled}"
    finally:
        phone.close()

    wide = browser.new_context(viewport={"width": 1280, "height": 860})
    page = wide.new_page()
    target = SCREENSHOTS if os.environ.get("GRAPHMESH_UPDATE_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    try:
        sign_in(page, review_mesh, "rita")
        expect(_row(page, approval_id)).to_be_visible()
        page.screenshot(path=str(target / "review-queue.png"))
        _row(page, approval_id).get_by_role("link").first.click()
        expect(page.get_by_test_id("approve")).to_be_visible()
        page.screenshot(path=str(target / "review-approval.png"), full_page=True)
    finally:
        wide.close()
    assert (target / "review-queue.png").stat().st_size > 10_000
