"""The AdmissionReview protocol, the two handlers, the webhook configurations."""
