"""services/review: ReviewService, approvals and audit (the review loop is issue 3)."""
