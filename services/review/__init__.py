"""services/review: ReviewService, approvals, decisions, expiry and the audit trail."""
