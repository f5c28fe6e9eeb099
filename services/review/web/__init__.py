"""The review page: a web page for approvals served by the review process (docs/review-page.md)."""
